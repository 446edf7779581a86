/*
 * Replay driver: runs a fuzz target over files without libFuzzer, so the
 * seed corpora and the regression inputs run under plain `meson test`
 * (suite fuzz-replay), with gcc, valgrind or the sanitizer build.
 * SPDX-License-Identifier: MIT
 *
 *   fuzz_TARGET PATH...   each PATH a file or a directory of files
 *
 * Exits 0 when every input ran, 1 if a path could not be read. A target
 * that finds a bug aborts, which fails the test.
 */
#define _POSIX_C_SOURCE 200809L

#include <dirent.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

static int run_file(const char *path, size_t *pcount) {
  FILE *f = fopen(path, "rb");
  if (!f) {
    fprintf(stderr, "cannot open %s\n", path);
    return 1;
  }
  size_t cap = 4096, len = 0;
  uint8_t *buf = malloc(cap);
  if (!buf) {
    fclose(f);
    return 1;
  }
  for (;;) {
    if (len == cap) {
      uint8_t *p = realloc(buf, cap * 2);
      if (!p) {
        free(buf);
        fclose(f);
        return 1;
      }
      buf = p;
      cap *= 2;
    }
    size_t n = fread(buf + len, 1, cap - len, f);
    if (n == 0) break;
    len += n;
  }
  int bad = ferror(f);
  fclose(f);
  if (bad) {
    free(buf);
    fprintf(stderr, "cannot read %s\n", path);
    return 1;
  }
  /* An exact-size copy, so that an over-read is caught by ASan and
   * valgrind as it would be under libFuzzer. */
  uint8_t *exact = malloc(len ? len : 1);
  if (!exact) {
    free(buf);
    return 1;
  }
  if (len) memcpy(exact, buf, len);
  free(buf);
  LLVMFuzzerTestOneInput(exact, len);
  free(exact);
  (*pcount)++;
  return 0;
}

static int run_path(const char *path, size_t *pcount) {
  struct stat st;
  if (stat(path, &st) != 0) {
    fprintf(stderr, "cannot stat %s\n", path);
    return 1;
  }
  if (!S_ISDIR(st.st_mode)) return run_file(path, pcount);
  DIR *d = opendir(path);
  if (!d) {
    fprintf(stderr, "cannot open directory %s\n", path);
    return 1;
  }
  int rv = 0;
  struct dirent *e;
  while ((e = readdir(d)) != NULL) {
    if (e->d_name[0] == '.') continue;
    size_t n = strlen(path) + strlen(e->d_name) + 2;
    char *sub = malloc(n);
    if (!sub) {
      rv = 1;
      break;
    }
    snprintf(sub, n, "%s/%s", path, e->d_name);
    rv |= run_path(sub, pcount);
    free(sub);
  }
  closedir(d);
  return rv;
}

int main(int argc, char **argv) {
  size_t count = 0;
  int rv = 0;
  if (argc < 2) {
    fprintf(stderr, "usage: %s FILE-OR-DIRECTORY...\n", argv[0]);
    return 2;
  }
  for (int i = 1; i < argc; i++)
    rv |= run_path(argv[i], &count);
  printf("%s: ran %zu inputs\n", argv[0], count);
  return rv;
}
