/* placeholder until the module lands */
#include <stdio.h>
int main(void) { printf("0 passed, 1 failed\n"); return 1; }
