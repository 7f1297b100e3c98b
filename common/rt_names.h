/*
 * rt_names: stable short names of the contract's enums, shared by every
 * service's replies, logs and metric labels (one list, not one per service).
 */
#ifndef RT_NAMES_H
#define RT_NAMES_H

#include "rt_proto.h"

/* "ok", "malformed", "too_large", "expired", ... ("internal" if unknown). */
const char *rt_verify_error_name(Unpuzzle__Rt__V1__VerifyError error);
/* "allowed", "bad_room", "not_member", ... ("internal" if unknown). */
const char *rt_deny_reason_name(Unpuzzle__Rt__V1__DenyReason reason);

#endif
