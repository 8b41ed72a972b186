#include "kernels/check.h"
