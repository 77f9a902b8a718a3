#include <stdlib.h>
#include "project.h"

int parse_numbers(const char *text, double *out, int max)
{
    int n = 0;
    char *end;
    while (n < max) {
        double d = strtod(text, &end);
        if (end == text)
            break;
        out[n++] = d;
        text = end;
    }
    return n;
}
