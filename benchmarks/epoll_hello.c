// epoll_hello: the ceiling the benchmark runner (benchmarks/run.py) measures
// cluster against. One process, one thread, level-triggered epoll, no HTTP
// parsing at all: a request is whatever ends in "\r\n\r\n", and every request
// gets the same 200 "Hello World\n" response, with the same header set as
// examples/hello (Date refreshed once per second, fixed Content-Length).
// Pipelined requests that arrive in one read are answered in one write.
//
//   build-bench/benchmarks/epoll_hello --host 127.0.0.1 --port 0
//
// It prints "epoll_hello: pid <PID> listening on http://<HOST>:<PORT>" on
// stdout once it accepts; SIGTERM or SIGINT stops it.
#define _GNU_SOURCE
#include <arpa/inet.h>
#include <errno.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/epoll.h>
#include <sys/socket.h>
#include <time.h>
#include <unistd.h>

enum { read_size = 16384, max_events = 256, max_fds = 65536 };

// The response, with the Date value patched in place once per second.
static const char response_template[] =
    "HTTP/1.1 200 OK\r\n"
    "Date: Thu, 01 Jan 1970 00:00:00 GMT\r\n"
    "Content-Length: 12\r\n"
    "Content-Type: text/plain; charset=utf-8\r\n"
    "\r\n"
    "Hello World\n";
enum { response_size = sizeof response_template - 1, date_offset = 23, date_size = 29 };

static char response[response_size];
static time_t response_second = -1;

// Per connection: the last 3 bytes of the previous read (a terminator can
// straddle two reads), and output that a short write left behind (a client
// that stopped reading).
struct conn {
  int used;
  char tail[3];
  char* pending;
  size_t pending_size;
  size_t pending_off;
};
static struct conn conns[max_fds];

static void refresh_date(void) {
  time_t now = time(NULL);
  if (now == response_second) return;
  response_second = now;
  struct tm tm;
  gmtime_r(&now, &tm);
  char date[date_size + 1];
  strftime(date, sizeof date, "%a, %d %b %Y %H:%M:%S GMT", &tm);
  memcpy(response + date_offset, date, date_size);
}

// Counts the "\r\n\r\n" terminators in data: memchr finds each '\n', and the
// three bytes before it (from this read or the tail of the previous one) must
// be "\r\n\r".
static size_t count_requests(struct conn* c, const char* data, size_t size) {
  size_t requests = 0;
  const char* end = data + size;
  for (const char* p = memchr(data, '\n', size); p; p = memchr(p + 1, '\n', (size_t)(end - p - 1))) {
    size_t i = (size_t)(p - data);
    char b1 = i >= 1 ? p[-1] : c->tail[2];
    char b2 = i >= 2 ? p[-2] : c->tail[1 + i];
    char b3 = i >= 3 ? p[-3] : c->tail[i];
    if (b1 == '\r' && b2 == '\n' && b3 == '\r') ++requests;
    if (p + 1 == end) break;
  }
  // Keep the last 3 bytes seen, across reads shorter than 3 bytes too.
  char last[6];
  memcpy(last, c->tail, 3);
  size_t keep = size < 3 ? size : 3;
  memcpy(last + 3, end - keep, keep);
  memcpy(c->tail, last + keep, 3);
  return requests;
}

static void close_conn(int ep, int fd) {
  epoll_ctl(ep, EPOLL_CTL_DEL, fd, NULL);
  close(fd);
  free(conns[fd].pending);
  memset(&conns[fd], 0, sizeof conns[fd]);
}

// Writes what a short write left; returns 0 when all is out, 1 when some is
// left (EPOLLOUT stays armed), -1 on error.
static int flush_pending(int ep, int fd) {
  struct conn* c = &conns[fd];
  while (c->pending_off < c->pending_size) {
    ssize_t n = write(fd, c->pending + c->pending_off, c->pending_size - c->pending_off);
    if (n < 0) return errno == EAGAIN ? 1 : -1;
    c->pending_off += (size_t)n;
  }
  free(c->pending);
  c->pending = NULL;
  c->pending_size = c->pending_off = 0;
  struct epoll_event ev = {.events = EPOLLIN, .data.fd = fd};
  epoll_ctl(ep, EPOLL_CTL_MOD, fd, &ev);
  return 0;
}

// Sends `count` responses in one write; keeps what the socket did not take.
static int respond(int ep, int fd, size_t count) {
  static char out[response_size * 256];
  struct conn* c = &conns[fd];
  while (count > 0) {
    size_t batch = count < 256 ? count : 256;
    for (size_t i = 0; i < batch; ++i) memcpy(out + i * response_size, response, response_size);
    size_t size = batch * response_size;
    ssize_t n = write(fd, out, size);
    if (n < 0 && errno != EAGAIN) return -1;
    if (n < 0) n = 0;
    count -= batch;
    if ((size_t)n < size || count > 0) {
      if ((size_t)n == size) continue;
      size_t left = size - (size_t)n + count * response_size;
      c->pending = malloc(left);
      if (!c->pending) return -1;
      memcpy(c->pending, out + n, size - (size_t)n);
      for (size_t i = 0; i < count; ++i) memcpy(c->pending + size - (size_t)n + i * response_size, response, response_size);
      c->pending_size = left;
      c->pending_off = 0;
      struct epoll_event ev = {.events = EPOLLOUT, .data.fd = fd};
      epoll_ctl(ep, EPOLL_CTL_MOD, fd, &ev);
      return 0;
    }
  }
  return 0;
}

static volatile sig_atomic_t stopping = 0;
static void on_stop(int sig) {
  (void)sig;
  stopping = 1;
}

int main(int argc, char** argv) {
  const char* host = "127.0.0.1";
  int port = 8080;
  for (int i = 1; i < argc; ++i) {
    if (strcmp(argv[i], "--host") == 0 && i + 1 < argc) {
      host = argv[++i];
    } else if (strcmp(argv[i], "--port") == 0 && i + 1 < argc) {
      port = atoi(argv[++i]);
    } else {
      fprintf(stderr, "usage: %s [--host IPV4] [--port N]\n", argv[0]);
      return 2;
    }
  }
  struct sigaction sa;
  memset(&sa, 0, sizeof sa);
  sa.sa_handler = on_stop;
  sigaction(SIGTERM, &sa, NULL);
  sigaction(SIGINT, &sa, NULL);
  signal(SIGPIPE, SIG_IGN);
  memcpy(response, response_template, response_size);

  int lfd = socket(AF_INET, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
  int one = 1;
  setsockopt(lfd, SOL_SOCKET, SO_REUSEADDR, &one, sizeof one);
  struct sockaddr_in addr = {.sin_family = AF_INET, .sin_port = htons((unsigned short)port)};
  if (inet_pton(AF_INET, host, &addr.sin_addr) != 1) {
    fprintf(stderr, "epoll_hello: --host must be a numeric IPv4 address, not %s\n", host);
    return 2;
  }
  // The accept queue of net.core.somaxconn's default (4096), as the runner's
  // growth sections give cluster and nginx: 10,000 connections arrive at once.
  if (bind(lfd, (struct sockaddr*)&addr, sizeof addr) != 0 || listen(lfd, 4096) != 0) {
    perror("epoll_hello: bind/listen");
    return 1;
  }
  socklen_t len = sizeof addr;
  getsockname(lfd, (struct sockaddr*)&addr, &len);

  int ep = epoll_create1(EPOLL_CLOEXEC);
  struct epoll_event lev = {.events = EPOLLIN, .data.fd = lfd};
  epoll_ctl(ep, EPOLL_CTL_ADD, lfd, &lev);
  printf("epoll_hello: pid %d listening on http://%s:%d\n", (int)getpid(), host, ntohs(addr.sin_port));
  fflush(stdout);

  static char buf[read_size];
  struct epoll_event events[max_events];
  while (!stopping) {
    int n = epoll_wait(ep, events, max_events, -1);
    if (n < 0) {
      if (errno == EINTR) continue;
      perror("epoll_hello: epoll_wait");
      return 1;
    }
    refresh_date();
    for (int i = 0; i < n; ++i) {
      int fd = events[i].data.fd;
      if (fd == lfd) {
        for (;;) {
          int cfd = accept4(lfd, NULL, NULL, SOCK_NONBLOCK | SOCK_CLOEXEC);
          if (cfd < 0) break;
          if (cfd >= max_fds) {
            close(cfd);
            continue;
          }
          setsockopt(cfd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof one);
          conns[cfd].used = 1;
          struct epoll_event cev = {.events = EPOLLIN, .data.fd = cfd};
          epoll_ctl(ep, EPOLL_CTL_ADD, cfd, &cev);
        }
        continue;
      }
      if (events[i].events & EPOLLOUT) {
        if (flush_pending(ep, fd) < 0) close_conn(ep, fd);
        continue;
      }
      // Level-triggered: one read per wake-up; what is left wakes us again.
      ssize_t got = read(fd, buf, sizeof buf);
      if (got <= 0) {
        if (got < 0 && errno == EAGAIN) continue;
        close_conn(ep, fd);
        continue;
      }
      size_t requests = count_requests(&conns[fd], buf, (size_t)got);
      if (requests > 0 && respond(ep, fd, requests) < 0) close_conn(ep, fd);
    }
  }
  close(ep);
  close(lfd);
  return 0;
}
