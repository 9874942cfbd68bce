#ifndef AMOEBA_READY_STAMP_H
#define AMOEBA_READY_STAMP_H
#include "pjrt_subset.h"

// When a PJRT event became ready, written by the plugin's own thread (PJRT_Event_OnReady), so
// each device's completion time is known without the host waiting on the devices in turn.
// Swift cannot hand a capturing closure to C as a callback; this small struct is the user_arg.
typedef struct AmoebaReadyStamp AmoebaReadyStamp;

AmoebaReadyStamp *amoeba_ready_stamp_create(void);
void amoeba_ready_stamp_destroy(AmoebaReadyStamp *stamp);
// The PJRT_Event_OnReadyCallback: takes the event's error (ownership passes to the stamp).
void amoeba_ready_stamp_callback(PJRT_Error *error, void *stamp);
// CLOCK_MONOTONIC seconds at which the event was ready, or a negative number before that.
// `error` receives the event's error (the caller destroys it), or NULL.
double amoeba_ready_stamp_seconds(AmoebaReadyStamp *stamp, PJRT_Error **error);

#endif
