// libFuzzer's driver, for an executable that has its own main (SwiftPM gives every
// executable one). Only the fuzzing build (`scripts/fuzz`, -sanitize=fuzzer) links libFuzzer
// and calls this; the normal build never references it.
#include <stddef.h>
#include <stdint.h>

int LLVMFuzzerRunDriver(int *argc, char ***argv, int (*callback)(const uint8_t *data, size_t size));
