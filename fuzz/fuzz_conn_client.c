/*
 * Fuzz target: a whole connection in client role (see conn_driver.c for
 * the input layout and the invariants). Without CF_RAW the driver answers
 * the client's request with a valid 101 (right accept key) before the
 * fuzzer's frame bytes.
 * SPDX-License-Identifier: MIT
 */
#include <ws/ws.h>

int fuzz_conn_run(ws_role role, const uint8_t *data, size_t size);
int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
  return fuzz_conn_run(WS_ROLE_CLIENT, data, size);
}
