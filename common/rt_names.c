#include "rt_names.h"

#include <stddef.h>

#define VERR(x) UNPUZZLE__RT__V1__VERIFY_ERROR__VERIFY_ERROR_##x
#define DENY(x) UNPUZZLE__RT__V1__DENY_REASON__DENY_REASON_##x

const char *rt_verify_error_name(Unpuzzle__Rt__V1__VerifyError error)
{
    static const char *const names[] = {
        [VERR(UNSPECIFIED)] = "ok",
        [VERR(MALFORMED)] = "malformed",
        [VERR(TOO_LARGE)] = "too_large",
        [VERR(EXPIRED)] = "expired",
        [VERR(NOT_YET_VALID)] = "not_yet_valid",
        [VERR(ISSUED_IN_FUTURE)] = "issued_in_future",
        [VERR(BAD_SIGNATURE)] = "bad_signature",
        [VERR(WRONG_AUDIENCE)] = "wrong_audience",
        [VERR(WRONG_ISSUER)] = "wrong_issuer",
        [VERR(ALGORITHM_NOT_ALLOWED)] = "algorithm_not_allowed",
        [VERR(UNKNOWN_KEY)] = "unknown_key",
        [VERR(MISSING_SUBJECT)] = "missing_subject",
        [VERR(MISSING_EXPIRY)] = "missing_expiry",
        [VERR(INTERNAL)] = "internal",
        [VERR(UNAVAILABLE)] = "unavailable",
    };
    if ((size_t)error < sizeof(names) / sizeof(names[0]) && names[error])
        return names[error];
    return "internal";
}

const char *rt_deny_reason_name(Unpuzzle__Rt__V1__DenyReason reason)
{
    static const char *const names[] = {
        [DENY(UNSPECIFIED)] = "allowed",
        [DENY(BAD_ROOM)] = "bad_room",
        [DENY(NOT_MEMBER)] = "not_member",
        [DENY(NOT_OWNER)] = "not_owner",
        [DENY(UNKNOWN_LESSON)] = "unknown_lesson",
        [DENY(UNAVAILABLE)] = "unavailable",
        [DENY(INTERNAL)] = "internal",
    };
    if ((size_t)reason < sizeof(names) / sizeof(names[0]) && names[reason])
        return names[reason];
    return "internal";
}
