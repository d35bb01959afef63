/* A stand-in for Windows' bcryptprimitives.dll, for running Rust programs under wine 8.0
 * (Debian 12), which lacks it: Rust's std (since 1.78) takes its randomness from
 * ProcessPrng there, and a program that cannot find it does not start (c0000135).
 * ProcessPrng here asks BCryptGenRandom, which wine has, for the system's generator.
 * Built with mingw-w64 into a test's private wine prefix by scripts/wine/prefix; real
 * Windows 10 and later ship the DLL. */
#include <windows.h>
#include <bcrypt.h>

BOOL WINAPI ProcessPrng(PBYTE data, SIZE_T len)
{
    while (len > 0) {
        ULONG chunk = len > 0x10000000 ? 0x10000000 : (ULONG)len;
        if (!BCRYPT_SUCCESS(BCryptGenRandom(NULL, data, chunk, BCRYPT_USE_SYSTEM_PREFERRED_RNG)))
            return FALSE;
        data += chunk;
        len -= chunk;
    }
    return TRUE;
}
