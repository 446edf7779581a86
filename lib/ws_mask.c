/* placeholder: being written */
#include "ws_int.h"
typedef int ws_placeholder_ws_mask;
