/* compress.c -- placeholder until the module lands. */
#include "strataInt.h"
