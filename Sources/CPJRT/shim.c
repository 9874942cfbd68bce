// SwiftPM builds a C target from at least one source file; the interface is all in the header.
#include "pjrt_subset.h"
