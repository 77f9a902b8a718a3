#include <math.h>
#include "project.h"

double mean(const double *v, int n)
{
    double t = 0;
    for (int i = 0; i < n; i++)
        t += v[i];
    return n ? t / n : 0;
}

double stddev(const double *v, int n)
{
    double m = mean(v, n), t = 0;
    for (int i = 0; i < n; i++)
        t += (v[i] - m) * (v[i] - m);
    return n ? sqrt(t / n) : 0;
}
