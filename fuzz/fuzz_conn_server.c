/*
 * Fuzz target: a whole connection in server role (see conn_driver.c for
 * the input layout and the invariants).
 * SPDX-License-Identifier: MIT
 */
#include <ws/ws.h>

int fuzz_conn_run(ws_role role, const uint8_t *data, size_t size);
int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
  return fuzz_conn_run(WS_ROLE_SERVER, data, size);
}
