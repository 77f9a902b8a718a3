#ifndef PROJECT_H
#define PROJECT_H
#include <stddef.h>

struct strbuf {
    char *data;
    size_t len, cap;
};

void strbuf_init(struct strbuf *sb);
void strbuf_append(struct strbuf *sb, const char *s);
void strbuf_free(struct strbuf *sb);

int parse_numbers(const char *text, double *out, int max);
double mean(const double *v, int n);
double stddev(const double *v, int n);
#endif
