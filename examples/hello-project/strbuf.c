#include <stdlib.h>
#include <string.h>
#include "project.h"

void strbuf_init(struct strbuf *sb)
{
    sb->cap = 16;
    sb->len = 0;
    sb->data = calloc(sb->cap, 1);
}

void strbuf_append(struct strbuf *sb, const char *s)
{
    size_t n = strlen(s);
    while (sb->len + n + 1 > sb->cap) {
        sb->cap *= 2;
        sb->data = realloc(sb->data, sb->cap);
    }
    memcpy(sb->data + sb->len, s, n + 1);
    sb->len += n;
}

void strbuf_free(struct strbuf *sb)
{
    free(sb->data);
    sb->data = NULL;
}
