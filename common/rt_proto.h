/*
 * rt_proto: every generated message of the v1 contract (proto/), in one
 * include. Types are named Unpuzzle__Rt__V1__<Message> by protoc-c.
 */
#ifndef RT_PROTO_H
#define RT_PROTO_H

#include "google/protobuf/timestamp.pb-c.h"
#include "google/protobuf/wrappers.pb-c.h"
#include "unpuzzle/rt/v1/analytics.pb-c.h"
#include "unpuzzle/rt/v1/auth.pb-c.h"
#include "unpuzzle/rt/v1/common.pb-c.h"
#include "unpuzzle/rt/v1/events.pb-c.h"
#include "unpuzzle/rt/v1/notify.pb-c.h"
#include "unpuzzle/rt/v1/presence.pb-c.h"
#include "unpuzzle/rt/v1/rooms.pb-c.h"

#endif
