/*
 * wscat: a WebSocket client for the terminal and for scripts (and, with
 * -l, a server), with the options of npm's wscat 6 under the same
 * spellings, plus binary messages, files and JSON output. doc/wscat.1 is
 * its manual.
 *
 * Lines read from stdin (or given with -x) are sent as text messages.
 * What arrives goes to stdout: on a terminal as "< message", every line
 * prefixed, in colour; elsewhere (a pipe, a file) each message whole and
 * raw, followed by a newline, so `wscat -c URL | jq` works; with --json
 * as one JSON object per line for every event. Status and errors go to
 * stderr, and errors name what failed ("connect 127.0.0.1:9: Connection
 * refused").
 *
 * A thread reads stdin and hands the lines to the loop with
 * ws_loop_post_send() and ws_loop_post_call(), the thread-safe ways in.
 * Every client connection goes through a small transport of our own
 * (struct wlink): plain TCP, an HTTP CONNECT tunnel for --proxy, and the
 * mbedTLS adapter inside it for wss://.
 *
 * Exit status: 0 after a normal close (1000, 1001, no code, or a close we
 * started), 1 if resolving, connecting, the proxy, TLS or the opening
 * handshake failed, 2 for bad usage or a bad URL, 3 if the peer closed
 * with an error code or the connection broke.
 * SPDX-License-Identifier: MIT
 */
#define _POSIX_C_SOURCE 200809L

#include <ws/ws_loop.h>
#ifdef WS_EXAMPLES_TLS
#  include <ws/ws_mbedtls.h>
#endif

#include <ctype.h>
#include <errno.h>
#include <netdb.h>
#include <pthread.h>
#include <signal.h>
#include <stdarg.h>
#include <stdatomic.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <sys/socket.h>
#include <sys/uio.h>
#include <termios.h>
#include <time.h>
#include <unistd.h>

#define MAX_LIST 32 /* -H, -s, -x and --file: this many of each */
#define DEFAULT_CA "/etc/ssl/certs/ca-certificates.crt" /* Debian's bundle */
#define MAX_MESSAGE (64u << 20)
#define LINK_ERR_PROXY (-601) /* our transport: the proxy refused */

enum { EXIT_OK = 0, EXIT_CONNECT = 1, EXIT_USAGE = 2, EXIT_BROKEN = 3 };

/* ---- options ------------------------------------------------------------ */

typedef struct opts {
  const char *connect, *listen, *origin, *host, *auth, *proxy;
  const char *ca, *cert, *key, *passphrase;
  const char *headers[MAX_LIST], *protos[MAX_LIST], *execs[MAX_LIST];
  const char *files[MAX_LIST];
  size_t nheaders, nprotos, nexecs, nfiles;
  double wait; /* seconds; < 0: hold open */
  int wait_set, show_ping_pong, slash, no_check, insecure, follow;
  int no_color, json, binary, no_deflate, reconnect;
  unsigned long ping, max_redirects;
} opts;

enum opt_id {
  O_CONNECT,
  O_LISTEN,
  O_EXECUTE,
  O_WAIT,
  O_PINGPONG,
  O_SLASH,
  O_ORIGIN,
  O_HEADER,
  O_SUBPROTOCOL,
  O_HOST,
  O_AUTH,
  O_PROXY,
  O_LOCATION,
  O_MAXREDIR,
  O_NOCHECK,
  O_CA,
  O_CERT,
  O_KEY,
  O_PASSPHRASE,
  O_PROTOCOL,
  O_BINARY,
  O_FILE,
  O_JSON,
  O_NOCOLOR,
  O_NODEFLATE,
  O_RECONNECT,
  O_PING,
  O_INSECURE,
  O_VERSION,
  O_HELP
};

typedef struct optdef {
  char s;          /* short form, or 0 */
  const char *l;   /* long form */
  const char *arg; /* value's name ("[NAME]": optional), NULL for a flag */
  int id;
  const char *help;
} optdef;

static const optdef optdefs[] = {
    {'c', "connect", "URL", O_CONNECT,
     "connect to URL (ws://, wss://; no scheme means ws://)"},
    {'l', "listen", "[ADDR:]PORT", O_LISTEN,
     "listen on PORT (ADDR 127.0.0.1; 0: any free port)"},
    {'x', "execute", "MESSAGE", O_EXECUTE,
     "send MESSAGE after connecting, then wait (-w) and close; "
     "repeatable; stdin is not read"},
    {'w', "wait", "SECONDS", O_WAIT,
     "after -x, --file or the end of stdin, wait this long for replies "
     "before closing (default 2 after -x/--file, 1 after stdin; -1: stay "
     "open until the server closes)"},
    {'P', "show-ping-pong", NULL, O_PINGPONG,
     "print the pings and pongs that arrive"},
    {0, "slash", NULL, O_SLASH,
     "stdin lines /ping [data], /pong [data], /close [code [reason]] send "
     "control frames (//x sends /x)"},
    {'o', "origin", "ORIGIN", O_ORIGIN, "send Origin: ORIGIN"},
    {'H', "header", "'NAME: VALUE'", O_HEADER,
     "add a request header; repeatable"},
    {'s', "subprotocol", "PROTOCOL", O_SUBPROTOCOL,
     "offer a subprotocol; repeatable"},
    {0, "host", "HOST", O_HOST, "send Host: HOST instead of the URL's"},
    {0, "auth", "USER:PASS", O_AUTH,
     "HTTP Basic authentication (also from ws://USER:PASS@HOST/)"},
    {0, "proxy", "[http://]HOST:PORT", O_PROXY,
     "connect through an HTTP proxy (CONNECT); USER:PASS@ allowed"},
    {'L', "location", NULL, O_LOCATION, "follow redirects (3xx Location)"},
    {0, "max-redirects", "[N]", O_MAXREDIR, "with -L, at most N (10)"},
    {'n', "no-check", NULL, O_NOCHECK,
     "wss://: do NOT verify the server's certificate (testing only)"},
    {0, "insecure", NULL, O_INSECURE, "the same as -n"},
    {0, "ca", "FILE", O_CA,
     "wss://: trusted CA certificates, PEM (" DEFAULT_CA ")"},
    {0, "cert", "FILE", O_CERT, "wss://: client certificate chain, PEM"},
    {0, "key", "FILE", O_KEY, "wss://: its private key, PEM (default: --cert)"},
    {0, "passphrase", "[PASS]", O_PASSPHRASE,
     "the key's passphrase; without PASS, asked for on the terminal"},
    {'p', "protocol", "VERSION", O_PROTOCOL,
     "WebSocket protocol version: only 13"},
    {'b', "binary", NULL, O_BINARY,
     "send stdin lines and -x messages as binary messages"},
    {0, "file", "PATH", O_FILE,
     "after connecting, send the file (- for all of stdin) as one binary "
     "message; repeatable; then as -x"},
    {0, "json", NULL, O_JSON,
     "print every event as one JSON object per line on stdout"},
    {0, "no-color", NULL, O_NOCOLOR, "no colour (also when NO_COLOR is set)"},
    {0, "no-deflate", NULL, O_NODEFLATE, "do not offer permessage-deflate"},
    {0, "reconnect", NULL, O_RECONNECT,
     "connect again when the server restarts or the connection breaks "
     "(1001, 1006, 1011-1014, 5xx, refused): backoff with full jitter, "
     "0.5 s doubling to 30 s; not after 1000 or a 4xx"},
    {0, "ping", "SECONDS", O_PING, "ping when idle that long (keepalive)"},
    {'V', "version", NULL, O_VERSION, "print the version and exit"},
    {'h', "help", NULL, O_HELP, "print this help and exit"},
};
#define NOPTS (sizeof(optdefs) / sizeof(optdefs[0]))

/* Prints |text| from column |col|, wrapped before column 80. */
static void wrap(FILE *f, const char *text, int col) {
  int at = col;
  while (*text) {
    size_t w = strcspn(text, " ");
    if (at > col && at + 1 + (int)w > 79) {
      fprintf(f, "\n%*s", col, "");
      at = col;
    } else if (at > col) {
      fputc(' ', f);
      at++;
    }
    fprintf(f, "%.*s", (int)w, text);
    at += (int)w;
    text += w + strspn(text + w, " ");
  }
  fputc('\n', f);
}

static void usage(FILE *f) {
  fprintf(f, "usage: wscat [options] -c URL\n"
             "       wscat [options] -l [ADDR:]PORT\n\n");
  for (size_t i = 0; i < NOPTS; i++) {
    const optdef *d = &optdefs[i];
    char left[64];
    if (d->s)
      snprintf(left, sizeof(left), "-%c, --%s%s%s", d->s, d->l,
               d->arg ? " " : "", d->arg ? d->arg : "");
    else
      snprintf(left, sizeof(left), "    --%s%s%s", d->l, d->arg ? " " : "",
               d->arg ? d->arg : "");
    fprintf(f, "  %-28s", left);
    if (strlen(left) > 27) fprintf(f, "\n%30s", "");
    wrap(f, d->help, 30);
  }
  fprintf(f, "\nexit status: 0 normal close, 1 could not connect (resolve, "
             "connect, proxy,\nTLS, handshake), 2 bad usage or URL, 3 closed "
             "with an error code or\nconnection lost. doc/wscat.1 has the "
             "details.\n");
}

#if defined(__GNUC__)
__attribute__((format(printf, 1, 2)))
#endif
static int
bad_usage(const char *fmt, ...) {
  va_list ap;
  va_start(ap, fmt);
  fputs("wscat: ", stderr);
  vfprintf(stderr, fmt, ap);
  va_end(ap);
  fputs(" (wscat --help lists the options)\n", stderr);
  return EXIT_USAGE;
}

static int add_to(const char **list, size_t *n, const char *v,
                  const char *what) {
  if (*n == MAX_LIST) return bad_usage("at most %d %s", MAX_LIST, what);
  list[(*n)++] = v;
  return -1;
}

static int number(const char *v, double lo, double hi, double *out) {
  char *end;
  errno = 0;
  *out = strtod(v, &end);
  return errno || end == v || *end || *out < lo || *out > hi ? -1 : 0;
}

/* Applies one option. Returns -1 to go on, else the exit status. */
static int apply(opts *o, const optdef *d, const char *v) {
  double x;
  switch (d->id) {
  case O_CONNECT: o->connect = v; break;
  case O_LISTEN: o->listen = v; break;
  case O_EXECUTE: return add_to(o->execs, &o->nexecs, v, "-x");
  case O_FILE: return add_to(o->files, &o->nfiles, v, "--file");
  case O_HEADER: return add_to(o->headers, &o->nheaders, v, "-H");
  case O_SUBPROTOCOL: return add_to(o->protos, &o->nprotos, v, "-s");
  case O_WAIT:
    if (number(v, -1, 86400, &x) != 0 || (x < 0 && x != -1))
      return bad_usage("-w %s: need seconds (0 to 86400) or -1", v);
    o->wait = x, o->wait_set = 1;
    break;
  case O_PINGPONG: o->show_ping_pong = 1; break;
  case O_SLASH: o->slash = 1; break;
  case O_ORIGIN: o->origin = v; break;
  case O_HOST: o->host = v; break;
  case O_AUTH: o->auth = v; break;
  case O_PROXY: o->proxy = v; break;
  case O_LOCATION: o->follow = 1; break;
  case O_MAXREDIR:
    if (!*v) break; /* the default */
    if (number(v, 0, 100, &x) != 0 || x != (double)(unsigned)x)
      return bad_usage("--max-redirects %s: need 0 to 100", v);
    o->max_redirects = (unsigned long)x;
    break;
  case O_NOCHECK: o->no_check = 1; break;
  case O_INSECURE: o->insecure = 1; break;
  case O_CA: o->ca = v; break;
  case O_CERT: o->cert = v; break;
  case O_KEY: o->key = v; break;
  case O_PASSPHRASE: o->passphrase = v; break; /* "": ask */
  case O_PROTOCOL:
    if (strcmp(v, "13") != 0)
      return bad_usage("-p %s: only protocol version 13 (RFC 6455) is spoken",
                       v);
    break;
  case O_BINARY: o->binary = 1; break;
  case O_JSON: o->json = 1; break;
  case O_NOCOLOR: o->no_color = 1; break;
  case O_NODEFLATE: o->no_deflate = 1; break;
  case O_RECONNECT: o->reconnect = 1; break;
  case O_PING:
    if (number(v, 1, 86400, &x) != 0 || x != (double)(unsigned)x)
      return bad_usage("--ping %s: need whole seconds, 1 to 86400", v);
    o->ping = (unsigned long)x;
    break;
  case O_VERSION: printf("wscat (libws) %s\n", WS_VERSION); return EXIT_OK;
  case O_HELP: usage(stdout); return EXIT_OK;
  }
  return -1;
}

static const optdef *find_opt(const char *a, size_t len, int is_long) {
  for (size_t i = 0; i < NOPTS; i++) {
    const optdef *d = &optdefs[i];
    if (is_long ? strlen(d->l) == len && !strncmp(d->l, a, len)
                : d->s && d->s == a[0])
      return &optdefs[i];
  }
  return NULL;
}

/* Parses argv: -x V, -xV, --long V, --long=V; a lone argument is the URL.
 * Returns -1 to go on, else the exit status. */
static int parse_args(int argc, char **argv, opts *o) {
  memset(o, 0, sizeof(*o));
  o->max_redirects = 10;
  for (int i = 1; i < argc; i++) {
    const char *a = argv[i], *v = NULL, *eq;
    const optdef *d;
    if (a[0] != '-' || !a[1]) {
      if (o->connect) return bad_usage("unexpected argument '%s'", a);
      o->connect = a;
      continue;
    }
    if (a[1] == '-') {
      eq = strchr(a + 2, '=');
      d = find_opt(a + 2, eq ? (size_t)(eq - a - 2) : strlen(a + 2), 1);
      if (eq) v = eq + 1;
    } else {
      d = find_opt(a + 1, 1, 0);
      if (d && a[2]) v = a + 2;
    }
    if (!d) return bad_usage("unknown option '%s'", a);
    if (!d->arg && v) return bad_usage("%s takes no value", a);
    int optional = d->arg && d->arg[0] == '[';
    if (d->arg && !v && optional &&
        (i + 1 == argc || (argv[i + 1][0] == '-' && argv[i + 1][1])))
      v = ""; /* an optional value left out */
    else if (d->arg && !v && i + 1 == argc)
      return bad_usage("%s needs %s", a, d->arg);
    else if (d->arg && !v)
      v = argv[++i];
    int rv = apply(o, d, v);
    if (rv >= 0) return rv;
  }
  return -1;
}

/* Refuses combinations that cannot work, saying why. */
static int check_opts(const opts *o) {
  if (!o->connect && !o->listen)
    return bad_usage("say where: -c URL to connect, or -l PORT to listen");
  if (o->connect && o->listen)
    return bad_usage("use either -l/--listen or -c/--connect");
  if (o->listen) {
    const struct {
      int set;
      const char *name;
    } client_only[] = {
        {o->nexecs > 0, "-x"},         {o->nfiles > 0, "--file"},
        {o->slash, "--slash"},         {o->origin != NULL, "-o"},
        {o->nheaders > 0, "-H"},       {o->nprotos > 0, "-s"},
        {o->host != NULL, "--host"},   {o->auth != NULL, "--auth"},
        {o->proxy != NULL, "--proxy"}, {o->follow, "-L"},
        {o->ca != NULL, "--ca"},       {o->cert != NULL, "--cert"},
        {o->key != NULL, "--key"},     {o->no_check || o->insecure, "-n"},
        {o->wait_set, "-w"},
    };
    for (size_t i = 0; i < sizeof(client_only) / sizeof(client_only[0]); i++)
      if (client_only[i].set)
        return bad_usage("%s is for --connect only", client_only[i].name);
  }
  return -1;
}

/* ---- small helpers ------------------------------------------------------ */

static const char b64chars[] =
    "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";

/* Writes base64 of |in| to |f| (or into |out| when |f| is NULL). */
static void b64(const uint8_t *in, size_t n, FILE *f, char *out) {
  if (!f) out[0] = 0;
  for (size_t i = 0; i < n; i += 3) {
    uint32_t v = (uint32_t)in[i] << 16;
    if (i + 1 < n) v |= (uint32_t)in[i + 1] << 8;
    if (i + 2 < n) v |= in[i + 2];
    char q[4] = {b64chars[v >> 18], b64chars[(v >> 12) & 63],
                 i + 1 < n ? b64chars[(v >> 6) & 63] : '=',
                 i + 2 < n ? b64chars[v & 63] : '='};
    if (f)
      fwrite(q, 1, 4, f);
    else
      memcpy(out + i / 3 * 4, q, 4), out[i / 3 * 4 + 4] = 0;
  }
}

/* "Basic base64(user:pass)", malloc'd. */
static char *basic_auth(const char *userpass) {
  size_t n = strlen(userpass);
  char *s = malloc(6 + (n + 2) / 3 * 4 + 1);
  if (!s) return NULL;
  memcpy(s, "Basic ", 7);
  b64((const uint8_t *)userpass, n, NULL, s + 6);
  return s;
}

/* Decodes %XX in place. */
static void percent_decode(char *s) {
  char *w = s;
  for (; *s; s++) {
    if (s[0] == '%' && isxdigit((unsigned char)s[1]) &&
        isxdigit((unsigned char)s[2])) {
      char hex[3] = {s[1], s[2], 0};
      *w++ = (char)strtol(hex, NULL, 16);
      s += 2;
    } else {
      *w++ = *s;
    }
  }
  *w = 0;
}

static void sleep_seconds(double s) {
  struct timespec ts = {(time_t)s, (long)((s - (double)(time_t)s) * 1e9)};
  while (nanosleep(&ts, &ts) != 0 && errno == EINTR) {
  }
}

/* "host:port", with brackets around an IPv6 address. */
static void host_port(char *buf, size_t len, const char *host, unsigned port) {
  snprintf(buf, len, strchr(host, ':') ? "[%s]:%u" : "%s:%u", host, port);
}

/* ---- output ----------------------------------------------------------- */

enum { OUT_TTY, OUT_RAW, OUT_JSON };
static struct {
  int mode;
  int color, ecolor; /* colour on stdout, on stderr */
  int show_ping_pong, listening;
} out;

#define BLUE "\033[34m"
#define GREEN "\033[32m"
#define YELLOW "\033[33m"
#define RESET "\033[39m"

static void out_init(const opts *o) {
  const char *no_color = getenv("NO_COLOR");
  int nocolor = o->no_color || (no_color && *no_color);
  out.mode = o->json ? OUT_JSON : isatty(1) ? OUT_TTY : OUT_RAW;
  out.color = out.mode == OUT_TTY && !nocolor;
  out.ecolor = isatty(2) && !nocolor;
  out.show_ping_pong = o->show_ping_pong;
  out.listening = o->listen != NULL;
}

static void json_str(const uint8_t *p, size_t n) {
  putchar('"');
  for (size_t i = 0; i < n; i++) {
    if (p[i] == '"' || p[i] == '\\')
      printf("\\%c", p[i]);
    else if (p[i] == '\n')
      fputs("\\n", stdout);
    else if (p[i] < 0x20 || p[i] == 0x7f)
      printf("\\u%04x", p[i]);
    else
      putchar(p[i]);
  }
  putchar('"');
}

/* "data":"text" when |s| is UTF-8, else "base64":"...". */
static void json_data(ws_slice s) {
  if (ws_utf8_validate(s.base, s.len) == 0) {
    fputs(",\"data\":", stdout);
    json_str(s.base, s.len);
  } else {
    fputs(",\"base64\":\"", stdout);
    b64(s.base, s.len, stdout, NULL);
    putchar('"');
  }
}

/* json_begin() to json_end() holds stdout: the input thread may print an
 * error event meanwhile. */
static void json_begin(const char *event, ws_loop_conn *c) {
  flockfile(stdout);
  printf("{\"event\":\"%s\"", event);
  if (out.listening && c)
    printf(",\"conn\":%llu", (unsigned long long)ws_loop_conn_id(c));
}

static void json_end(void) {
  fputs("}\n", stdout);
  fflush(stdout);
  funlockfile(stdout);
}

/* Status for people, on stderr ("connected to ...", "closed: 1000"). */
#if defined(__GNUC__)
__attribute__((format(printf, 1, 2)))
#endif
static void
status(const char *fmt, ...) {
  va_list ap;
  va_start(ap, fmt);
  if (out.ecolor) fputs(GREEN, stderr);
  vfprintf(stderr, fmt, ap);
  if (out.ecolor) fputs(RESET, stderr);
  fputc('\n', stderr);
  va_end(ap);
}

/* An error: "wscat: ..." on stderr, and an "error" event with --json. */
#if defined(__GNUC__)
__attribute__((format(printf, 1, 2)))
#endif
static void
error_msg(const char *fmt, ...) {
  char msg[1024];
  va_list ap;
  va_start(ap, fmt);
  vsnprintf(msg, sizeof(msg), fmt, ap);
  va_end(ap);
  fprintf(stderr, "%swscat: %s%s\n", out.ecolor ? YELLOW : "", msg,
          out.ecolor ? RESET : "");
  if (out.mode == OUT_JSON) {
    json_begin("error", NULL);
    fputs(",\"message\":", stdout);
    json_str((const uint8_t *)msg, strlen(msg));
    json_end();
  }
}

/* A message: "< " before every line on a terminal (binary as hex), the
 * bytes as they came plus a newline elsewhere, or a JSON object. */
static void out_message(ws_loop_conn *c, const ws_event *ev) {
  ws_slice s = ev->data;
  int bin = ev->type == WS_EV_BINARY;
  if (out.mode == OUT_JSON) {
    json_begin("message", c);
    printf(",\"type\":\"%s\"", bin ? "binary" : "text");
    if (bin) {
      fputs(",\"base64\":\"", stdout);
      b64(s.base, s.len, stdout, NULL);
      putchar('"');
    } else {
      fputs(",\"data\":", stdout);
      json_str(s.base, s.len);
    }
    json_end();
    return;
  }
  if (out.mode == OUT_RAW) {
    fwrite(s.base, 1, s.len, stdout);
  } else if (bin) {
    printf("%s< [binary %zu]%s", out.color ? BLUE : "", s.len,
           s.len ? " " : "");
    for (size_t i = 0; i < s.len; i++)
      printf("%02x", s.base[i]);
    fputs(out.color ? RESET : "", stdout);
  } else {
    const char *p = (const char *)s.base, *e = p + s.len;
    for (;;) { /* every line gets the prefix */
      const char *nl = p < e ? memchr(p, '\n', (size_t)(e - p)) : NULL;
      const char *end = nl ? nl : e;
      fputs(out.color ? BLUE "< " : "< ", stdout);
      fwrite(p, 1, (size_t)(end - p), stdout); /* NUL is valid text too */
      fputs(out.color ? RESET : "", stdout);
      if (!nl) break;
      putchar('\n');
      p = nl + 1;
    }
  }
  putchar('\n');
  fflush(stdout);
}

/* A ping or pong: with -P as npm's wscat prints it; always with --json. */
static void out_control(ws_loop_conn *c, const ws_event *ev) {
  const char *what = ev->type == WS_EV_PING ? "ping" : "pong";
  if (out.mode == OUT_JSON) {
    json_begin(what, c);
    json_data(ev->data);
    json_end();
    return;
  }
  if (!out.show_ping_pong) return;
  printf("%s%sReceived %s (data: \"%.*s\")%s\n", out.color ? BLUE : "",
         out.mode == OUT_TTY ? "< " : "", what, (int)ev->data.len,
         (const char *)ev->data.base, out.color ? RESET : "");
  fflush(stdout);
}

/* ---- the client's transport: TCP, a CONNECT tunnel, TLS inside -------- */

/* What the transport of the one client connection needs to know. */
typedef struct wlink {
  const ws_loop_transport *tls; /* the mbedTLS transport for wss://, or NULL */
  char sni[256];                /* the server's host: SNI, name check */
  char target[300];             /* "host:port" to CONNECT to; "" direct */
  char *proxy_auth;             /* Proxy-Authorization value, or NULL */
  const char *host_value;       /* Host header to put in the request, or
                                   NULL to keep the core's */
  char where[300];              /* "host:port" of the TCP peer, for errors */
  int tcp_up;                   /* the TCP connection was made */
} wlink;

typedef struct link_ctx {
  wlink *lk;
  void *inner;           /* the TLS session, once the tunnel is up */
  int tunnel;            /* 1 once the proxy said 2xx (or no proxy) */
  char req[1024];        /* the CONNECT request ... */
  size_t reqlen, reqpos; /* ... and how much of it was sent */
  char head[4096];       /* the proxy's answer so far */
  size_t headlen;
  uint8_t *held;           /* the core's output while the tunnel is made, */
  size_t heldlen, heldpos; /* or while the request head is collected */
  int head_done;           /* the request head went through set_host() */
  char err[1200];
} link_ctx;

static int sys_read(int fd, uint8_t *buf, size_t cap, size_t *pn) {
  for (;;) {
    ssize_t r = recv(fd, buf, cap, 0);
    if (r > 0) {
      *pn = (size_t)r;
      return 0;
    }
    if (r == 0) return WS_ERR_EOF;
    if (errno == EINTR) continue;
    return errno == EAGAIN || errno == EWOULDBLOCK ? WS_ERR_WOULDBLOCK
                                                   : WS_LOOP_ERR_IO;
  }
}

static int sys_write(int fd, const ws_iovec *iov, size_t n, size_t *pn) {
  struct iovec v[8];
  size_t cnt = n < 8 ? n : 8;
  *pn = 0;
  if (cnt == 0) return 0;
  for (size_t i = 0; i < cnt; i++) {
    v[i].iov_base = (void *)(uintptr_t)iov[i].base;
    v[i].iov_len = iov[i].len;
  }
  for (;;) {
    ssize_t w = writev(fd, v, (int)cnt);
    if (w >= 0) {
      *pn = (size_t)w;
      return 0;
    }
    if (errno == EINTR) continue;
    return errno == EAGAIN || errno == EWOULDBLOCK ? WS_ERR_WOULDBLOCK
                                                   : WS_LOOP_ERR_IO;
  }
}

/* Writes through TLS when there is TLS, else to the socket. */
static int lower_write(link_ctx *x, int fd, const ws_iovec *iov, size_t n,
                       size_t *pn) {
  if (x->inner) return x->lk->tls->write(x->inner, fd, iov, n, pn);
  return sys_write(fd, iov, n, pn);
}

/* Sends what is left of the CONNECT request. */
static int send_request(link_ctx *x, int fd) {
  while (x->reqpos < x->reqlen) {
    ws_iovec v = {(const uint8_t *)x->req + x->reqpos, x->reqlen - x->reqpos};
    size_t w;
    int rv = sys_write(fd, &v, 1, &w);
    if (rv != 0) return rv;
    x->reqpos += w;
  }
  return 0;
}

/* Hands over what the core wrote while the tunnel was being made. */
static int push_held(link_ctx *x, int fd) {
  while (x->head_done && x->heldpos < x->heldlen) {
    ws_iovec v = {x->held + x->heldpos, x->heldlen - x->heldpos};
    size_t w = 0;
    int rv = lower_write(x, fd, &v, 1, &w);
    x->heldpos += w;
    if (rv != 0) return rv;
    if (w == 0) return WS_ERR_WOULDBLOCK;
  }
  if (x->head_done && x->held) { /* all handed over */
    free(x->held);
    x->held = NULL;
    x->heldlen = x->heldpos = 0;
  }
  return x->inner ? x->lk->tls->write(x->inner, fd, NULL, 0, &(size_t){0}) : 0;
}

static int tunnel_up(link_ctx *x, int fd) {
  x->tunnel = 1;
  if (x->lk->tls) {
    int rv = x->lk->tls->attach(x->lk->tls->user_data, fd, WS_ROLE_CLIENT,
                                x->lk->sni, &x->inner);
    if (rv != 0) return rv;
  }
  int rv = push_held(x, fd);
  return rv == WS_ERR_WOULDBLOCK ? 0 : rv;
}

/* Reads the proxy's answer byte by byte (what follows it is the
 * server's) and opens the tunnel on 2xx. */
static int tunnel_read(link_ctx *x, int fd) {
  int rv = send_request(x, fd);
  if (rv != 0) return rv;
  while (x->headlen < 4 || memcmp(x->head + x->headlen - 4, "\r\n\r\n", 4)) {
    size_t n;
    if (x->headlen == sizeof(x->head) - 1) {
      snprintf(x->err, sizeof(x->err), "proxy %s: answer too long",
               x->lk->where);
      return LINK_ERR_PROXY;
    }
    rv = sys_read(fd, (uint8_t *)x->head + x->headlen, 1, &n);
    if (rv == WS_ERR_EOF)
      snprintf(x->err, sizeof(x->err),
               "proxy %s closed the connection "
               "before answering CONNECT %s",
               x->lk->where, x->lk->target);
    if (rv != 0) return rv == WS_ERR_EOF ? LINK_ERR_PROXY : rv;
    x->headlen += n;
  }
  x->head[x->headlen] = 0;
  int major, minor, code = 0;
  if (sscanf(x->head, "HTTP/%d.%d %d", &major, &minor, &code) != 3 ||
      code < 200 || code > 299) {
    snprintf(x->err, sizeof(x->err), "proxy %s refused CONNECT %s: %.*s",
             x->lk->where, x->lk->target, (int)strcspn(x->head, "\r\n"),
             x->head);
    return LINK_ERR_PROXY;
  }
  return tunnel_up(x, fd);
}

static void lk_detach(void *ctx);

static int lk_attach(void *ud, int fd, ws_role role, const char *server_name,
                     void **pctx) {
  wlink *lk = ud;
  link_ctx *x = calloc(1, sizeof(*x));
  int rv = 0;
  (void)role, (void)server_name; /* the loop's host is the proxy's */
  if (!x) return WS_ERR_NOMEM;
  x->lk = lk;
  x->head_done = lk->host_value == NULL;
  lk->tcp_up = 1;
  if (!lk->target[0]) {
    rv = tunnel_up(x, fd);
  } else {
    int n = snprintf(
        x->req, sizeof(x->req), "CONNECT %s HTTP/1.1\r\nHost: %s\r\n%s%s%s\r\n",
        lk->target, lk->target, lk->proxy_auth ? "Proxy-Authorization: " : "",
        lk->proxy_auth ? lk->proxy_auth : "", lk->proxy_auth ? "\r\n" : "");
    x->reqlen = n > 0 && (size_t)n < sizeof(x->req) ? (size_t)n : 0;
    rv = x->reqlen ? send_request(x, fd) : WS_ERR_INVALID_ARGUMENT;
  }
  if (rv != 0 && rv != WS_ERR_WOULDBLOCK) { /* the loop drops the context */
    lk_detach(x);
    return rv;
  }
  *pctx = x;
  return 0;
}

static int lk_read(void *ctx, int fd, uint8_t *buf, size_t cap, size_t *pn) {
  link_ctx *x = ctx;
  if (!x->tunnel) {
    int rv = tunnel_read(x, fd);
    if (rv != 0) return rv;
  }
  if (x->inner) return x->lk->tls->read(x->inner, fd, buf, cap, pn);
  return sys_read(fd, buf, cap, pn);
}

/* Appends the core's output to |held|, taking all of it. */
static int hold(link_ctx *x, const ws_iovec *iov, size_t n, size_t *pn) {
  size_t total = 0;
  for (size_t i = 0; i < n; i++)
    total += iov[i].len;
  uint8_t *h = realloc(x->held, x->heldlen + total + 1);
  if (!h) return WS_ERR_NOMEM;
  x->held = h;
  for (size_t i = 0; i < n; i++) {
    memcpy(x->held + x->heldlen, iov[i].base, iov[i].len);
    x->heldlen += iov[i].len;
  }
  x->held[x->heldlen] = 0; /* for set_host()'s strstr() */
  *pn = total;
  return 0;
}

/* Once the whole request head is held, puts lk->host_value in its Host
 * line: the loop adds the port to Host unless it is 80, so "--host name"
 * and wss:// on 443 need this. */
static int set_host(link_ctx *x) {
  const char *h = (const char *)x->held;
  const char *crlf2 = strstr(h, "\r\n\r\n");
  if (!crlf2) return 0; /* not all there yet */
  const char *line = strstr(h, "\r\nHost: ");
  if (!line || line > crlf2) return WS_ERR_INTERNAL;
  line += 2;
  const char *end = strstr(line, "\r\n");
  size_t vlen = strlen(x->lk->host_value), pre = (size_t)(line - h);
  size_t post = x->heldlen - (size_t)(end - h);
  uint8_t *nb = malloc(pre + 6 + vlen + post + 1);
  if (!nb) return WS_ERR_NOMEM;
  memcpy(nb, h, pre);
  memcpy(nb + pre, "Host: ", 6);
  memcpy(nb + pre + 6, x->lk->host_value, vlen);
  memcpy(nb + pre + 6 + vlen, end, post + 1);
  free(x->held);
  x->held = nb;
  x->heldlen = pre + 6 + vlen + post;
  x->head_done = 1;
  return 0;
}

static int lk_write(void *ctx, int fd, const ws_iovec *iov, size_t n,
                    size_t *pn) {
  link_ctx *x = ctx;
  *pn = 0;
  if (!x->tunnel || !x->head_done) { /* keep it: no tunnel or head yet */
    int rv = hold(x, iov, n, pn);
    if (rv == 0 && !x->head_done) rv = set_host(x);
    if (rv == 0 && !x->tunnel)
      rv = send_request(x, fd);
    else if (rv == 0 && x->head_done)
      rv = push_held(x, fd);
    return rv == WS_ERR_WOULDBLOCK ? 0 : rv;
  }
  int rv = push_held(x, fd);
  if (rv != 0) return rv;
  return lower_write(x, fd, iov, n, pn);
}

static size_t lk_pending(void *ctx) {
  link_ctx *x = ctx;
  size_t n = x->reqlen - x->reqpos;
  if (x->tunnel && x->head_done) n += x->heldlen - x->heldpos;
  if (x->inner && x->lk->tls->pending) n += x->lk->tls->pending(x->inner);
  return n;
}

static int lk_shutdown(void *ctx, int fd) {
  link_ctx *x = ctx;
  if (x->inner && x->lk->tls->shutdown)
    return x->lk->tls->shutdown(x->inner, fd);
  return 0;
}

static void lk_detach(void *ctx) {
  link_ctx *x = ctx;
  if (x->inner && x->lk->tls->detach) x->lk->tls->detach(x->inner);
  free(x->held);
  free(x);
}

static const char *lk_error(void *ctx) {
  link_ctx *x = ctx;
  if (x->err[0]) return x->err;
  if (x->inner && x->lk->tls->error) return x->lk->tls->error(x->inner);
  return NULL;
}

/* ---- the application's state ------------------------------------------- */

static const opts *opt;
static ws_loop *loop;
static ws_config cfg;
static wlink lk;
static ws_loop_transport link_tp = {&lk,       lk_attach,  lk_read,
                                    lk_write,  lk_pending, lk_shutdown,
                                    lk_detach, lk_error};
#ifdef WS_EXAMPLES_TLS
static ws_tls_ctx *tls;
static ws_loop_transport tls_tp;
#endif
static ws_kv hdrs[MAX_LIST + 1]; /* -H, and Authorization */
static size_t nhdrs;
static char *auth_hdr;  /* the Authorization value, or NULL */
static char *url_copy;  /* the URL being connected to (paths point in) */
static ws_loop_url cur; /* ... parsed */
static unsigned redirects;
static ws_loop_conn *cur_conn; /* the open client connection */
static _Atomic uint64_t conn_id;
static atomic_int we_closed; /* we started the close handshake */
static int opened, exit_status = EXIT_CONNECT;
static pthread_t worker;
static int worker_started;

/* The TCP peer for messages: "127.0.0.1:9001" or "proxy 10.0.0.1:3128". */
static const char *tcp_peer(void) {
  static char buf[320];
  snprintf(buf, sizeof(buf), "%s%s", lk.target[0] ? "proxy " : "", lk.where);
  return buf;
}

/* On the loop's thread: starts the close handshake of |c|, noting that we
 * started it (the exit status is 0 whatever code the peer echoes). */
static int close_conn(ws_loop_conn *c, uint16_t code, const void *reason,
                      size_t len) {
  atomic_store(&we_closed, 1);
  return ws_loop_close(c, code, reason, len);
}

/* -l: the open connections, to close them on SIGINT. */
static ws_loop_conn **lconns;
static size_t nlconns, caplconns;

static void track(ws_loop_conn *c, int add) {
  for (size_t i = 0; !add && i < nlconns; i++)
    if (lconns[i] == c) lconns[i] = lconns[--nlconns];
  if (add && nlconns == caplconns) {
    ws_loop_conn **n = realloc(lconns, (caplconns * 2 + 8) * sizeof(*n));
    if (!n) return;
    lconns = n, caplconns = caplconns * 2 + 8;
  }
  if (add) lconns[nlconns++] = c;
}

/* On the loop's thread: the client closes with |arg| (1000 or 1001); the
 * server closes every connection with 1001 and stops listening. */
static void close_all(ws_loop *l, void *arg) {
  uint16_t code = (uint16_t)(uintptr_t)arg;
  if (cur_conn) close_conn(cur_conn, code, NULL, 0);
  for (size_t i = 0; i < nlconns; i++)
    close_conn(lconns[i], 1001, NULL, 0);
  if (opt->listen) ws_loop_shutdown(l, 1001, 0, 2000);
}

/* ---- input: stdin lines, -x, --file, slash commands -------------------- */

/* Posts a message for the loop, waiting while the loop is behind. */
static void post(ws_opcode op, const void *data, size_t len) {
  struct timespec ms = {0, 1000000};
  int rv;
  while ((rv = ws_loop_post_send(loop, conn_id, op, data, len, 0)) ==
         WS_ERR_WOULDBLOCK)
    nanosleep(&ms, NULL);
  if (rv != 0)
    error_msg("cannot send a message of %zu bytes: %s", len,
              ws_loop_strerror(rv));
}

typedef struct command {
  enum { CMD_PING, CMD_PONG, CMD_CLOSE } kind;
  uint16_t code;
  size_t len;
  char data[];
} command;

/* On the loop's thread: a slash command for the open connection. */
static void run_command(ws_loop *l, void *arg) {
  command *c = arg;
  int rv = WS_ERR_INVALID_STATE;
  (void)l;
  if (cur_conn && c->kind == CMD_PING) {
    rv = ws_loop_ping(cur_conn, c->data, c->len);
  } else if (cur_conn && c->kind == CMD_PONG) {
    /* The loop has no ws_loop_pong(): this pong leaves with the next
     * write on the connection (a message, a ping, the close). */
    rv = ws_conn_pong(ws_loop_conn_ws(cur_conn), c->data, c->len);
  } else if (cur_conn) {
    rv = close_conn(cur_conn, c->code, c->data, c->len);
    if (rv != 0) atomic_store(&we_closed, 0);
  }
  if (rv != 0)
    error_msg("/%s: %s",
              c->kind == CMD_PING   ? "ping"
              : c->kind == CMD_PONG ? "pong"
                                    : "close",
              ws_loop_strerror(rv));
  free(c);
}

/* "/ping [data]", "/pong [data]", "/close [code [reason]]". */
static void slash_command(const char *line) {
  size_t n = strcspn(line, " \t");
  const char *rest = line + n + strspn(line + n, " \t");
  command *c = calloc(1, sizeof(*c) + strlen(rest) + 1);
  if (!c) return;
  if (n == 5 && !strncmp(line, "/ping", n)) {
    c->kind = CMD_PING;
  } else if (n == 5 && !strncmp(line, "/pong", n)) {
    c->kind = CMD_PONG;
  } else if (n == 6 && !strncmp(line, "/close", n)) {
    char *end;
    unsigned long code = *rest ? strtoul(rest, &end, 10) : 1000;
    if (*rest && ((*end && *end != ' ' && *end != '\t') || code > 65535)) {
      error_msg("/close %s: the code must be a number", rest);
      free(c);
      return;
    }
    c->kind = CMD_CLOSE;
    c->code = (uint16_t)code;
    rest = *rest ? end + strspn(end, " \t") : rest;
  } else {
    error_msg("unknown command %.*s (--slash: /ping [data], /pong [data], "
              "/close [code [reason]]; //x sends /x)",
              (int)n, line);
    free(c);
    return;
  }
  c->len = strlen(rest);
  memcpy(c->data, rest, c->len);
  if (ws_loop_post_call(loop, run_command, c) != 0) free(c);
}

static void free_line(void *p) { free(*(char **)p); }

static void read_lines(void) {
  char *line = NULL;
  size_t cap = 0;
  ssize_t n;
  ws_opcode op = opt->binary ? WS_OP_BINARY : WS_OP_TEXT;
  pthread_cleanup_push(free_line, &line); /* main may cancel us in getline */
  while ((n = getline(&line, &cap, stdin)) >= 0) {
    if (n > 0 && line[n - 1] == '\n') n--;
    if (n > 0 && line[n - 1] == '\r') n--;
    line[n] = 0;
    if (opt->slash && line[0] == '/' && line[1] != '/')
      slash_command(line);
    else if (opt->slash && line[0] == '/')
      post(op, line + 1, (size_t)n - 1);
    else
      post(op, line, (size_t)n);
  }
  pthread_cleanup_pop(1);
}

/* Reads |path| ("-": stdin) whole and posts it as one binary message. */
static void send_file(const char *path) {
  FILE *f = strcmp(path, "-") ? fopen(path, "rb") : stdin;
  char *buf = NULL;
  size_t len = 0, cap = 0;
  int err = 0;
  if (!f) {
    error_msg("--file %s: %s", path, strerror(errno));
    return;
  }
  for (;;) {
    if (len == cap) {
      char *b = realloc(buf, cap = cap ? cap * 2 : 65536);
      if (!b) {
        err = ENOMEM;
        break;
      }
      buf = b;
    }
    size_t r = fread(buf + len, 1, cap - len, f);
    if (r == 0) break;
    len += r;
  }
  if (ferror(f) || err)
    error_msg("--file %s: %s", path, strerror(err ? err : errno));
  else
    post(WS_OP_BINARY, buf, len);
  free(buf);
  if (f != stdin) fclose(f);
}

/* The input thread: stdin lines, or -x and --file; then -w and close. */
static void *input_main(void *arg) {
  (void)arg;
  if (opt->nexecs || opt->nfiles) {
    for (size_t i = 0; i < opt->nexecs; i++)
      post(opt->binary ? WS_OP_BINARY : WS_OP_TEXT, opt->execs[i],
           strlen(opt->execs[i]));
    for (size_t i = 0; i < opt->nfiles; i++)
      send_file(opt->files[i]);
  } else {
    read_lines();
  }
  if (opt->listen) return NULL; /* the server goes on */
  double wait = opt->wait_set ? opt->wait : opt->nexecs || opt->nfiles ? 2 : 1;
  if (wait < 0) return NULL; /* -w -1: until the server closes */
  sleep_seconds(wait);
  ws_loop_post_call(loop, close_all, (void *)(uintptr_t)1000);
  return NULL;
}

/* ---- loop callbacks ------------------------------------------------------ */

static int on_open(ws_loop_conn *conn, void *ud) {
  char peer[64], shown[700];
  ws_pmd_params pmd;
  ws_slice proto = ws_conn_protocol(ws_loop_conn_ws(conn));
  (void)ud;
  ws_conn_pmd(ws_loop_conn_ws(conn), &pmd);
  ws_loop_conn_peer(conn, peer, sizeof(peer));
  if (opt->listen)
    snprintf(shown, sizeof(shown), "from %s", peer);
  else if (lk.target[0]) /* "to host:port through proxy p:q" */
    snprintf(shown, sizeof(shown), "to %s through %s", lk.target, tcp_peer());
  else if (strcmp(lk.where, peer) != 0) /* "to localhost:80 (::1:80)" */
    snprintf(shown, sizeof(shown), "to %s (%s)", lk.where, peer);
  else
    snprintf(shown, sizeof(shown), "to %s", lk.where);
  status("connected %s%s%.*s%s", shown, proto.len ? ", subprotocol " : "",
         (int)proto.len, (const char *)proto.base,
         pmd.enabled ? ", permessage-deflate" : "");
  if (out.mode == OUT_JSON) {
    json_begin("open", conn);
    fputs(",\"peer\":", stdout);
    json_str((const uint8_t *)peer, strlen(peer));
    fputs(",\"protocol\":", stdout);
    json_str(proto.base, proto.len);
    printf(",\"deflate\":%s", pmd.enabled ? "true" : "false");
    json_end();
  }
  if (opt->listen) {
    track(conn, 1);
    return 0;
  }
  opened = 1;
  cur_conn = conn;
  conn_id = ws_loop_conn_id(conn);
  if (!worker_started)
    worker_started = pthread_create(&worker, NULL, input_main, NULL) == 0;
  return 0;
}

/* Nobody reads stdout any more (`wscat ... | head -1`): close with 1000,
 * or stop listening. */
static int check_stdout(ws_loop_conn *conn) {
  static int gone;
  if (!ferror(stdout) || gone) return 0;
  gone = 1;
  if (opt->listen)
    close_all(loop, (void *)(uintptr_t)1001);
  else
    close_conn(conn, 1000, NULL, 0);
  return 0;
}

static int on_message(ws_loop_conn *conn, void *ud, const ws_event *ev) {
  (void)ud;
  out_message(conn, ev);
  return check_stdout(conn);
}

static int on_control(ws_loop_conn *conn, void *ud, const ws_event *ev) {
  (void)ud;
  out_control(conn, ev);
  return check_stdout(conn);
}

static int start_connect(const char *url);

/* A 3xx answer: with -L, connects to its Location. Returns 0 if it is
 * no redirect, 1 if it was followed, or minus the exit status (the
 * reason was printed). */
static int follow_redirect(const ws_loop_close_info *in) {
  ws_slice loc = {NULL, 0};
  const ws_response *r = in->response;
  for (size_t i = 0; r && i < r->nheaders; i++)
    if (r->headers[i].name.len == 8 &&
        !strncasecmp((const char *)r->headers[i].name.base, "location", 8))
      loc = r->headers[i].value;
  if (!loc.len || in->http_status < 300 || in->http_status > 399) return 0;
  if (!opt->follow) {
    error_msg("handshake failed: HTTP %d %.*s, to %.*s (-L follows it)",
              in->http_status, (int)r->reason.len, (const char *)r->reason.base,
              (int)loc.len, (const char *)loc.base);
    return -EXIT_CONNECT;
  }
  if (redirects++ == opt->max_redirects) {
    error_msg("too many redirects (%lu; --max-redirects)", opt->max_redirects);
    return -EXIT_CONNECT;
  }
  char next[2048], hp[300];
  host_port(hp, sizeof(hp), cur.host, cur.port);
  if (loc.len > 1 && loc.base[0] == '/' && loc.base[1] == '/') /* //host/ */
    snprintf(next, sizeof(next), "%s:%.*s", cur.secure ? "wss" : "ws",
             (int)loc.len, (const char *)loc.base);
  else if (loc.base[0] == '/') /* a path on the same server */
    snprintf(next, sizeof(next), "%s://%s%.*s", cur.secure ? "wss" : "ws", hp,
             (int)loc.len, (const char *)loc.base);
  else
    snprintf(next, sizeof(next), "%.*s", (int)loc.len, (const char *)loc.base);
  status("redirected (HTTP %d) to %s", in->http_status, next);
  int rv = start_connect(next);
  return rv == EXIT_OK ? 1 : -rv;
}

/* Says why a client connection never opened. */
static void report_failure(const ws_loop_close_info *in) {
  if (in->http_status && in->response) {
    int rv = follow_redirect(in);
    exit_status = rv < 0 ? -rv : EXIT_OK;
    if (rv != 0) return;
    error_msg("handshake failed: HTTP %d %.*s", in->http_status,
              (int)in->response->reason.len,
              (const char *)in->response->reason.base);
  } else if (in->transport_error) { /* TLS or the proxy: says which check */
    error_msg("connection failed: %s", in->transport_error);
  } else if (in->error == WS_LOOP_ERR_IO && !lk.tcp_up) {
    error_msg("connect %s: %s", tcp_peer(), strerror(in->sys_errno));
  } else if (in->error == WS_ERR_TIMEOUT) {
    error_msg(lk.tcp_up ? "%s: no answer to the opening handshake in time"
                        : "connect %s: timed out",
              tcp_peer());
  } else if (in->error == WS_ERR_EOF) {
    error_msg("%s closed the connection during the opening handshake",
              tcp_peer());
  } else {
    error_msg("connection to %s failed: %s%s%s", tcp_peer(),
              ws_loop_strerror(in->error), in->sys_errno ? ": " : "",
              in->sys_errno ? strerror(in->sys_errno) : "");
  }
  exit_status = EXIT_CONNECT;
}

/* --reconnect: the loop tries again after |delay| ms. */
static void report_reconnect(ws_loop_conn *conn, const ws_loop_close_info *in,
                             uint32_t delay) {
  const char *why = in->transport_error ? in->transport_error
                    : in->error         ? ws_loop_strerror(in->error)
                                        : "";
  status("%s %u%s%.*s%s%s, reconnecting in %u ms",
         opened ? "closed:" : "failed:",
         in->http_status ? (unsigned)in->http_status : in->code,
         in->reason.len ? " " : "", (int)in->reason.len,
         (const char *)in->reason.base, *why ? ", " : "", why, delay);
  if (out.mode == OUT_JSON) {
    json_begin("reconnect", conn);
    printf(",\"code\":%u,\"delay_ms\":%u", in->code, delay);
    json_end();
  }
  cur_conn = NULL;
  opened = 0;
}

static int on_close(ws_loop_conn *conn, void *ud,
                    const ws_loop_close_info *in) {
  uint32_t delay = 0;
  (void)ud;
  if (!opt->listen && ws_loop_conn_reconnect_delay(conn, &delay)) {
    report_reconnect(conn, in, delay);
    return 0;
  }
  if (!opt->listen && !opened) {
    cur_conn = NULL;
    report_failure(in);
    return 0;
  }
  status("closed: %u%s%.*s%s%s", in->code, in->reason.len ? " " : "",
         (int)in->reason.len, (const char *)in->reason.base,
         in->error ? ", " : "",
         in->transport_error ? in->transport_error
         : in->error         ? ws_loop_strerror(in->error)
                             : "");
  if (out.mode == OUT_JSON) {
    json_begin("close", conn);
    printf(",\"code\":%u,\"reason\":", in->code);
    json_str(in->reason.base, in->reason.len);
    fputs(",\"error\":", stdout);
    if (in->error) {
      const char *e = in->transport_error ? in->transport_error
                                          : ws_loop_strerror(in->error);
      json_str((const uint8_t *)e, strlen(e));
    } else {
      fputs("null", stdout);
    }
    json_end();
  }
  if (opt->listen) {
    track(conn, 0);
    return 0;
  }
  cur_conn = NULL;
  int normal = !in->error && (in->code == 1000 || in->code == 1001 ||
                              in->code == 1005 || atomic_load(&we_closed));
  exit_status = normal ? EXIT_OK : EXIT_BROKEN;
  return 0;
}

/* SIGINT, SIGTERM (blocked in every other thread): the first closes with
 * 1001 "going away" (on the loop's thread), the next one stops at once. */
static void *signal_main(void *arg) {
  const sigset_t *set = arg;
  int sig, n = 0;
  while (sigwait(set, &sig) == 0) {
    if (n++ == 0)
      ws_loop_post_call(loop, close_all, (void *)(uintptr_t)1001);
    else
      ws_loop_stop(loop);
  }
  return NULL;
}

/* ---- connecting and listening ------------------------------------------ */

/* Makes |in| a ws:// or wss:// URL without user info (malloc'd in
 * |*pout|): adds ws:// when it has no scheme (so "localhost:8080" works),
 * maps http(s) to ws(s), and moves "user:pass@" to |*puser| (malloc'd,
 * percent-decoded; NULL if none). Returns 0 or EXIT_USAGE. */
static int normalize_url(const char *in, char **pout, char **puser) {
  const char *sep = strstr(in, "://"), *rest = in, *scheme = "ws";
  size_t sl = sep ? (size_t)(sep - in) : 0;
  *puser = NULL;
  if (sep && sl &&
      strspn(in, "abcdefghijklmnopqrstuvwxyz"
                 "ABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789+-.") == sl) {
    rest = sep + 3;
    if ((sl == 2 && !strncasecmp(in, "ws", 2)) ||
        (sl == 4 && !strncasecmp(in, "http", 4)))
      scheme = "ws";
    else if ((sl == 3 && !strncasecmp(in, "wss", 3)) ||
             (sl == 5 && !strncasecmp(in, "https", 5)))
      scheme = "wss";
    else {
      error_msg("%s: unsupported scheme '%.*s' (ws, wss, http or https)", in,
                (int)sl, in);
      return EXIT_USAGE;
    }
  }
  size_t auth_len = strcspn(rest, "/?#");
  const char *at = NULL;
  for (const char *p = rest; p < rest + auth_len; p++)
    if (*p == '@') at = p;
  if (at) {
    *puser = strndup(rest, (size_t)(at - rest));
    if (*puser) percent_decode(*puser);
    rest = at + 1;
  }
  *pout = malloc(strlen(scheme) + 3 + strlen(rest) + 1);
  if (*pout) sprintf(*pout, "%s://%s", scheme, rest);
  return 0;
}

#ifdef WS_EXAMPLES_TLS
/* --passphrase without a value: asks on the terminal, without echo. */
static const char *ask_passphrase(void) {
  static char pass[256];
  struct termios old, quiet;
  FILE *tty = fopen("/dev/tty", "r+");
  if (!tty) {
    error_msg("--passphrase without a value needs a terminal to ask on");
    return NULL;
  }
  fputs("Passphrase: ", tty);
  fflush(tty);
  int restore = tcgetattr(fileno(tty), &old) == 0;
  quiet = old;
  quiet.c_lflag &= ~(tcflag_t)ECHO;
  if (restore) tcsetattr(fileno(tty), TCSANOW, &quiet);
  const char *got = fgets(pass, sizeof(pass), tty);
  if (restore) tcsetattr(fileno(tty), TCSANOW, &old);
  fputc('\n', tty);
  fclose(tty);
  if (!got) {
    error_msg("--passphrase: nothing read from the terminal");
    return NULL;
  }
  pass[strcspn(pass, "\r\n")] = 0;
  return pass;
}
#endif

/* The TLS context, made once for the first wss:// URL. */
static int make_tls(void) {
#ifdef WS_EXAMPLES_TLS
  if (tls) return 0;
  ws_tls_params p;
  char err[400];
  memset(&p, 0, sizeof(p));
  p.role = WS_ROLE_CLIENT;
  p.ca_file = opt->ca                         ? opt->ca
              : access(DEFAULT_CA, R_OK) == 0 ? DEFAULT_CA
                                              : NULL;
  p.cert_file = opt->cert;
  p.key_file = opt->key ? opt->key : opt->cert;
  p.key_password = opt->passphrase;
  if (opt->passphrase && !*opt->passphrase &&
      !(p.key_password = ask_passphrase()))
    return EXIT_USAGE;
  if (opt->insecure || opt->no_check) {
    error_msg("WARNING: --insecure (-n, --no-check): the server's "
              "certificate is NOT verified; anyone on the path can read and "
              "change this connection");
    p.flags = WS_TLS_INSECURE_NO_VERIFY;
  }
  if (ws_tls_ctx_new(&tls, &p, err, sizeof(err)) != 0) {
    error_msg("%s", err);
    return EXIT_CONNECT;
  }
  ws_tls_transport(&tls_tp, tls);
  lk.tls = &tls_tp;
  return 0;
#else
  error_msg("wss:// needs TLS, which is not built in (meson setup "
            "-Dtls=mbedtls)");
  return EXIT_USAGE;
#endif
}

/* --proxy [http://][user:pass@]host[:port]: fills |host| and |*pport|. */
static int parse_proxy(char *host, size_t hostlen, uint16_t *pport) {
  char *url = NULL, *user = NULL;
  ws_loop_url u;
  if (!strncasecmp(opt->proxy, "https://", 8)) {
    error_msg("--proxy %s: only http:// proxies are supported", opt->proxy);
    return EXIT_USAGE;
  }
  if (normalize_url(opt->proxy, &url, &user) != 0 || !url ||
      ws_loop_parse_url(url, &u) != 0 || strcmp(u.path, "/") != 0) {
    error_msg("--proxy %s: need [http://][USER:PASS@]HOST[:PORT]", opt->proxy);
    free(url), free(user);
    return EXIT_USAGE;
  }
  free(lk.proxy_auth);
  lk.proxy_auth = user ? basic_auth(user) : NULL;
  snprintf(host, hostlen, "%s", u.host);
  *pport = u.port;
  free(url), free(user);
  return 0;
}

/* Resolves |host| first, for an error that names it. */
static int check_resolves(const char *host) {
  struct addrinfo hints, *res = NULL;
  memset(&hints, 0, sizeof(hints));
  hints.ai_family = AF_UNSPEC;
  hints.ai_socktype = SOCK_STREAM;
  int rv = getaddrinfo(host, NULL, &hints, &res);
  if (rv == 0) {
    freeaddrinfo(res);
    return 0;
  }
  error_msg("resolve %s: %s", host,
            rv == EAI_SYSTEM ? strerror(errno) : gai_strerror(rv));
  return EXIT_CONNECT;
}

/* Fills the transport and the request for |cur| and connects. */
static int connect_cur(void) {
  char host[256], hosthdr[300];
  uint16_t port = cur.port;
  int rv;
  snprintf(host, sizeof(host), "%s", cur.host);
  lk.target[0] = 0;
  if (opt->proxy) {
    if ((rv = parse_proxy(host, sizeof(host), &port)) != 0) return rv;
    host_port(lk.target, sizeof(lk.target), cur.host, cur.port);
  }
  host_port(lk.where, sizeof(lk.where), host, port);
  snprintf(lk.sni, sizeof(lk.sni), "%s", cur.host);
  lk.tcp_up = 0;
  lk.tls = NULL;
  if (cur.secure && (rv = make_tls()) != 0) return rv;
  if ((rv = check_resolves(host)) != 0) return rv;
  snprintf(hosthdr, sizeof(hosthdr), strchr(cur.host, ':') ? "[%s]" : "%s",
           cur.host);
  ws_loop_connect_params cp;
  memset(&cp, 0, sizeof(cp));
  cp.host = host;
  cp.port = port;
  cp.transport = &link_tp;
  cp.config = &cfg;
  cp.request.host = hosthdr;
  cp.request.port = cur.port == (cur.secure ? 443 : 80) ? 0 : cur.port;
  /* The loop writes Host as NAME:PORT unless PORT is 80; the transport
   * puts in --host as given, or the name alone for wss:// on 443. */
  lk.host_value = opt->host                        ? opt->host
                  : cur.secure && !cp.request.port ? hosthdr
                                                   : NULL;
  cp.request.path = cur.path;
  cp.request.origin = opt->origin;
  cp.request.protocols = opt->protos;
  cp.request.nprotocols = opt->nprotos;
  cp.request.headers = hdrs;
  cp.request.nheaders = nhdrs + (auth_hdr != NULL);
  /* --reconnect: the loop's defaults (0.5 s, doubling, 30 s at most) */
  static const ws_loop_reconnect rc = {500, 30000, 200, 10000, 0};
  cp.reconnect = opt->reconnect ? &rc : NULL;
  errno = 0;
  rv = ws_loop_connect(loop, &cp, NULL);
  if (rv == WS_LOOP_ERR_IO)
    error_msg("connect %s: %s", tcp_peer(), strerror(errno));
  else if (rv != 0)
    error_msg("connect %s: %s", tcp_peer(), ws_loop_strerror(rv));
  return rv == 0                         ? EXIT_OK
         : rv == WS_ERR_INVALID_ARGUMENT ? EXIT_USAGE
                                         : EXIT_CONNECT;
}

/* Connects to |url| (the first one, or a redirect's). */
static int start_connect(const char *url) {
  char *norm = NULL, *user = NULL;
  char old_host[256];
  snprintf(old_host, sizeof(old_host), "%s", url_copy ? cur.host : "");
  int rv = normalize_url(url, &norm, &user);
  if (rv != 0 || !norm) {
    free(user);
    return rv ? rv : EXIT_CONNECT;
  }
  if (ws_loop_parse_url(norm, &cur) != 0) {
    error_msg("bad URL '%s': need ws[s]://[USER:PASS@]HOST[:PORT][/PATH]", url);
    free(norm), free(user);
    return EXIT_USAGE;
  }
  free(url_copy); /* the old connection is gone: nothing points in */
  url_copy = norm;
  /* Credentials go to the host they were given for, not to another one a
   * redirect names. */
  if (!old_host[0] || !strcmp(old_host, cur.host)) {
    if (opt->auth || user) {
      free(auth_hdr);
      auth_hdr = basic_auth(opt->auth ? opt->auth : user);
    }
  } else {
    free(auth_hdr);
    auth_hdr = NULL;
  }
  free(user);
  hdrs[nhdrs].name = "Authorization";
  hdrs[nhdrs].value = auth_hdr;
  return connect_cur();
}

/* -l [ADDR:]PORT */
static int start_listen(void) {
  const char *spec = opt->listen, *colon = strrchr(spec, ':');
  char host[256] = "127.0.0.1", hp[300];
  double port;
  if (colon) {
    size_t n = (size_t)(colon - spec);
    if (n >= 2 && spec[0] == '[' && spec[n - 1] == ']') spec++, n -= 2;
    snprintf(host, sizeof(host), "%.*s", (int)n, spec);
  }
  if (number(colon ? colon + 1 : spec, 0, 65535, &port) != 0 ||
      port != (uint16_t)port)
    return bad_usage("-l %s: need [ADDR:]PORT, PORT 0 to 65535", opt->listen);
  ws_loop_listen_params lp;
  uint16_t bound = 0;
  memset(&lp, 0, sizeof(lp));
  lp.host = host;
  lp.port = (uint16_t)port;
  lp.config = &cfg;
  errno = 0;
  int rv = ws_loop_listen(loop, &lp, &bound);
  host_port(hp, sizeof(hp), host, (unsigned)port);
  if (rv != 0) {
    error_msg("listen %s: %s", hp,
              rv == WS_LOOP_ERR_IO ? strerror(errno) : ws_loop_strerror(rv));
    return rv == WS_ERR_INVALID_ARGUMENT ? EXIT_USAGE : EXIT_CONNECT;
  }
  host_port(hp, sizeof(hp), host, bound);
  status("listening on ws://%s/", hp);
  if (out.mode == OUT_JSON) {
    json_begin("listening", NULL);
    printf(",\"port\":%u", bound);
    json_end();
  }
  worker_started = pthread_create(&worker, NULL, input_main, NULL) == 0;
  return 0;
}

/* An HTTP token (RFC 9110): what header names and subprotocols are. */
static int is_token(const char *s, size_t n) {
  for (size_t i = 0; i < n; i++)
    if (!isalnum((unsigned char)s[i]) && !strchr("!#$%&'*+-.^_`|~", s[i]))
      return 0;
  return n > 0;
}

/* Checks what goes into the request, before connecting: the core would
 * only say "invalid argument". */
static int check_request(const opts *o) {
  for (size_t i = 0; i < o->nfiles; i++)
    if (strcmp(o->files[i], "-") != 0 && access(o->files[i], R_OK) != 0) {
      error_msg("--file %s: %s", o->files[i], strerror(errno));
      return EXIT_USAGE;
    }
  for (size_t i = 0; i < o->nprotos; i++)
    if (!is_token(o->protos[i], strlen(o->protos[i])))
      return bad_usage("-s '%s': a subprotocol is a token (letters, digits "
                       "and !#$%%&'*+-.^_`|~)",
                       o->protos[i]);
  const char *v[] = {o->origin, o->host, o->auth};
  const char *name[] = {"-o", "--host", "--auth"};
  for (size_t i = 0; i < 3; i++)
    if (v[i] && v[i][strcspn(v[i], "\r\n")])
      return bad_usage("%s: no line breaks in a header value", name[i]);
  return -1;
}

/* -H 'Name: value' into |hdrs|; Host and Origin become --host and -o. */
static int parse_headers(opts *o) {
  for (size_t i = 0; i < o->nheaders; i++) {
    const char *h = o->headers[i], *colon = strchr(h, ':');
    size_t nl = colon ? (size_t)(colon - h) : 0;
    while (nl && (h[nl - 1] == ' ' || h[nl - 1] == '\t'))
      nl--;
    if (!colon || nl == 0) return bad_usage("-H '%s': need 'Name: value'", h);
    if (!is_token(h, nl))
      return bad_usage("-H '%s': the name must be a token", h);
    if (colon[strcspn(colon, "\r\n")])
      return bad_usage("-H: no line breaks in a header value");
    char *name = strndup(h, nl);
    const char *value = colon + 1 + strspn(colon + 1, " \t");
    if (!name) return EXIT_CONNECT;
    if (!strcasecmp(name, "host") || !strcasecmp(name, "origin")) {
      *(!strcasecmp(name, "host") ? &o->host : &o->origin) = value;
      free(name);
      continue;
    }
    hdrs[nhdrs].name = name;
    hdrs[nhdrs++].value = value;
  }
  return -1;
}

static int setup_loop(void) {
  ws_config_default(&cfg, opt->listen ? WS_ROLE_SERVER : WS_ROLE_CLIENT);
  cfg.delivery = WS_DELIVER_MESSAGE;
  cfg.max_message = cfg.max_frame_payload = MAX_MESSAGE;
  cfg.max_out_queue = MAX_MESSAGE + (8u << 20);
  cfg.pmd.enable = (uint8_t)!opt->no_deflate;
  cfg.ping_interval_ms = (uint32_t)(opt->ping * 1000);
  cfg.pong_timeout_ms = (uint32_t)(opt->ping * 2000);

  ws_loop_config lc;
  ws_loop_config_default(&lc);
  lc.callbacks.on_open = on_open;
  lc.callbacks.on_message = on_message;
  lc.callbacks.on_control = on_control;
  lc.callbacks.on_close = on_close;
  lc.max_post_bytes = MAX_MESSAGE + (1u << 20);
  int rv = ws_loop_new(&loop, &lc);
  if (rv != 0) error_msg("cannot make the loop: %s", ws_loop_strerror(rv));
  return rv == 0 ? 0 : EXIT_CONNECT;
}

int main(int argc, char **argv) {
  static opts o;
  int rv = parse_args(argc, argv, &o);
  if (rv < 0) rv = check_opts(&o);
  if (rv < 0) rv = parse_headers(&o);
  if (rv < 0) rv = check_request(&o);
  if (rv >= 0) return rv;
  opt = &o;
  out_init(&o);
#ifndef WS_EXAMPLES_TLS
  if (o.ca || o.cert || o.key || o.no_check || o.insecure) {
    error_msg("TLS (--ca, --cert, --key, -n) is not built in (meson setup "
              "-Dtls=mbedtls)");
    return EXIT_USAGE;
  }
#endif
  /* Signals go to one thread, before any other thread starts. */
  static sigset_t sigs;
  pthread_t sigthread;
  sigemptyset(&sigs);
  sigaddset(&sigs, SIGINT);
  sigaddset(&sigs, SIGTERM);
  pthread_sigmask(SIG_BLOCK, &sigs, NULL);
  signal(SIGPIPE, SIG_IGN);
  rv = setup_loop();
  int sig_started =
      rv == 0 && pthread_create(&sigthread, NULL, signal_main, &sigs) == 0;
  if (rv == 0) rv = o.listen ? start_listen() : start_connect(o.connect);
  if (rv == 0) {
    rv = ws_loop_run(loop);
    rv = o.listen ? (rv == 0 ? EXIT_OK : EXIT_CONNECT) : exit_status;
  }
  if (worker_started) { /* it may be blocked in getline(): end it */
    pthread_cancel(worker);
    pthread_join(worker, NULL);
  }
  if (sig_started) {
    pthread_cancel(sigthread);
    pthread_join(sigthread, NULL);
  }
  ws_loop_del(loop);
#ifdef WS_EXAMPLES_TLS
  ws_tls_ctx_del(tls);
#endif
  for (size_t i = 0; i < nhdrs; i++)
    free((char *)(uintptr_t)hdrs[i].name);
  free(auth_hdr), free(url_copy), free(lk.proxy_auth), free(lconns);
  return rv;
}
