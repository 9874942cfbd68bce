// SwiftPM builds a C target from at least one source file; the PJRT interface is all in its
// header. What is here: the one callback that must be C (`ready_stamp.h`).
#include "pjrt_subset.h"
#include "ready_stamp.h"
#include <stdatomic.h>
#include <stdlib.h>
#include <time.h>

struct AmoebaReadyStamp {
  atomic_int ready;
  double seconds;
  PJRT_Error *error;
};

AmoebaReadyStamp *amoeba_ready_stamp_create(void) {
  AmoebaReadyStamp *stamp = calloc(1, sizeof(AmoebaReadyStamp));
  if (stamp) atomic_init(&stamp->ready, 0);
  return stamp;
}

void amoeba_ready_stamp_destroy(AmoebaReadyStamp *stamp) { free(stamp); }

void amoeba_ready_stamp_callback(PJRT_Error *error, void *user) {
  AmoebaReadyStamp *stamp = user;
  struct timespec now;
  clock_gettime(CLOCK_MONOTONIC, &now);
  stamp->seconds = (double)now.tv_sec + (double)now.tv_nsec * 1e-9;
  stamp->error = error;
  atomic_store_explicit(&stamp->ready, 1, memory_order_release);
}

double amoeba_ready_stamp_seconds(AmoebaReadyStamp *stamp, PJRT_Error **error) {
  if (!atomic_load_explicit(&stamp->ready, memory_order_acquire)) return -1;
  if (error) { *error = stamp->error; stamp->error = NULL; }
  return stamp->seconds;
}
