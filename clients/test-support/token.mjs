// Tokens for tests: the same minting as the demo's (development only).
export { mintToken } from '../demo/traffic/token.mjs';
