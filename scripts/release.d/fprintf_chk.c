/* The one glibc-only symbol Debian's libseccomp.a needs that musl lacks:
 * _FORTIFY_SOURCE's checked fprintf, used by seccomp_export_pfc (never called by
 * minifargate). Forwards to vfprintf; the flag only selects extra checks. */
#include <stdarg.h>
#include <stdio.h>

int __fprintf_chk(FILE *stream, int flag, const char *format, ...)
{
    va_list ap;
    int n;
    (void)flag;
    va_start(ap, format);
    n = vfprintf(stream, format, ap);
    va_end(ap);
    return n;
}
