#include <stdio.h>
#include "project.h"

int main(int argc, char **argv)
{
    const char *input = argc > 1 ? argv[1] : "3 1 4 1 5 9 2 6";
    double v[64];
    int n = parse_numbers(input, v, 64);
    struct strbuf sb;
    strbuf_init(&sb);
    strbuf_append(&sb, "built with distcc-rs: ");
    printf("%s%d numbers, mean %.3f, stddev %.3f\n", sb.data, n, mean(v, n), stddev(v, n));
    strbuf_free(&sb);
    return 0;
}
