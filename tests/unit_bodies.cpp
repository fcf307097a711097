// Unit tests: response bodies of every kind (owned, shared, view, file) on
// the wire: content, framing, HEAD and 204/304, pipelined batches mixing
// kinds, short writes; response::file()'s fields and refusals; files sent
// with sendfile over a real loopback socket, a file that shrinks while it is
// sent, descriptors closed once sent; and a request body held in storage
// sized once, with the input buffer's growth bounded.
#include <cluster/body.hpp>
#include <cluster/detail/media_types.hpp>
#include <cluster/detail/request_parser.hpp>
#include <cluster/response.hpp>

#include <doctest/doctest.h>

#include "support/loopback_server.hpp"
#include "support/memory_socket.hpp"
#include "support/response_parser.hpp"
#include "support/test_data.hpp"
#include "support/temp_dir.hpp"

#include <fcntl.h>
#include <grp.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <unistd.h>

#include <atomic>
#include <chrono>
#include <cstring>
#include <memory>
#include <string>
#include <string_view>
#include <thread>
#include <vector>

using namespace test_support;

namespace {


// Sun, 06 Nov 1994 08:49:37 GMT, RFC 9110's example date.
constexpr std::time_t example_time = 784111777;

void set_mtime(const std::string& path, std::time_t t) {
  timespec times[2] = {{t, 0}, {t, 0}};
  REQUIRE(::utimensat(AT_FDCWD, path.c_str(), times, 0) == 0);
}

bool fd_open(int fd) { return ::fcntl(fd, F_GETFD) != -1; }

std::string get(std::string_view target, std::string_view method = "GET") {
  return std::string(method) + " " + std::string(target) + " HTTP/1.1\r\nHost: h\r\n\r\n";
}

// A file of `size` zero bytes that takes no disk space; returns `path`.
std::string make_sparse_file(const std::string& path, off_t size) {
  int fd = ::open(path.c_str(), O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0644);
  REQUIRE(fd >= 0);
  REQUIRE(::ftruncate(fd, size) == 0);
  ::close(fd);
  return path;
}

// A 64 MiB sparse file, more than the socket buffers hold, requested from a
// loopback server by a client with a small receive buffer, which has read
// its first bytes: the server is now blocked sending it.
struct big_download {
  static constexpr off_t size = 64 * 1024 * 1024;
  struct file_handler {
    std::string path;
    cluster::response operator()(const cluster::request&) const { return cluster::response::file(path); }
  };

  explicit big_download(cluster::options opts = {}) : server(handler, {}, 64 * 1024, std::move(opts)) {
    asio::error_code ec;
    test_support::write_all(server.client(), get("/"), ec);
    REQUIRE_FALSE(ec);
    std::vector<char> buf(64 * 1024);
    received = test_support::read_some(server.client(), asio::buffer(buf), ec);
    REQUIRE_FALSE(ec);
  }

  temp_dir dir{"sendfile-big"};
  std::string path = make_sparse_file(dir / "sparse.bin", size);
  file_handler handler{path};
  loopback_server server;
  std::size_t received = 0;  // bytes read so far
};

// Reads until the connection ends (or reads time out: 10 s, loopback_server)
// and returns the bytes read; `ec` says how it ended.
std::size_t read_to_end(asio::ip::tcp::socket& socket, asio::error_code& ec) {
  std::vector<char> buf(64 * 1024);
  std::size_t received = 0;
  for (int reads = 0; reads < 100'000; ++reads) {  // 6 GiB at the most: far past any test file
    std::size_t n = test_support::read_some(socket, asio::buffer(buf), ec);
    if (ec) break;
    received += n;
  }
  return received;
}


const std::string small_text = "hello, small";  // 12 bytes, copied after its head
const std::string large_text = pattern(100'000);
const std::string shared_text = pattern(70'000);
constexpr std::string_view view_text = "a view of static storage\n";

// One handler that answers every body kind, by path; /file serves `file_path`.
struct kinds_handler {
  std::string file_path;
  std::shared_ptr<const std::string> shared = std::make_shared<const std::string>(shared_text);

  cluster::response operator()(const cluster::request& req) const {
    std::string_view p = req.path();
    cluster::response res;
    if (p == "/owned")
      res = cluster::response::text(small_text);
    else if (p == "/large")
      res = cluster::response::with(200, std::string(large_text), "application/octet-stream");
    else if (p == "/shared")
      res = cluster::response::shared(shared, "application/octet-stream");
    else if (p == "/view")
      res = cluster::response::view(view_text, "text/plain");
    else
      res = cluster::response::file(file_path);
    // /204/... and /304/...: the same body with a status that has none.
    if (req.query() == "204") res.status = 204;
    if (req.query() == "304") res.status = 304;
    return res;
  }
};

std::string expected_body(std::string_view path, const std::string& file_content) {
  if (path == "/owned") return small_text;
  if (path == "/large") return large_text;
  if (path == "/shared") return shared_text;
  if (path == "/view") return std::string(view_text);
  return file_content;
}

constexpr std::string_view all_kinds[] = {"/owned", "/large", "/shared", "/view", "/file"};

// A directory with one file of `file_size` bytes and the handler serving
// every kind over it.
struct kinds_fixture {
  explicit kinds_fixture(std::size_t file_size) : content(pattern(file_size)) {
    write_file(dir / "data.bin", content);
  }
  temp_dir dir{"kinds"};
  std::string content;
  kinds_handler handler{dir / "data.bin"};
  cluster::options opts;
};

}  // namespace

TEST_SUITE("unit") {
  TEST_CASE("body: an owned body keeps a string's everyday surface; a moved-in string is not copied") {
    cluster::response res;
    CHECK(res.body.which() == cluster::body::kind::owned);
    CHECK(res.body.empty());
    res.body = "abc";
    CHECK(res.body == "abc");
    CHECK(res.body.size() == 3);
    res.body += "de";
    res.body += '!';
    CHECK(res.body == std::string("abcde!"));
    std::string big = pattern(1000);
    const char* storage = big.data();
    res.body = std::move(big);
    CHECK(res.body.bytes().data() == storage);
    CHECK(res.body.owned() != nullptr);
    CHECK(res.body.file() == nullptr);
    CHECK_FALSE(res.body == "abc");
  }

  TEST_CASE("body: shared and view bodies show their bytes in place; appending makes an owned copy") {
    auto bytes = std::make_shared<const std::string>("shared bytes");
    cluster::body shared = cluster::body::from_shared(bytes);
    CHECK(shared.which() == cluster::body::kind::shared);
    CHECK(shared.bytes().data() == bytes->data());
    CHECK(shared == "shared bytes");
    CHECK(bytes.use_count() == 2);
    shared += "!";
    CHECK(shared.which() == cluster::body::kind::owned);
    CHECK(shared == "shared bytes!");
    CHECK(*bytes == "shared bytes");
    CHECK(bytes.use_count() == 1);
    CHECK(cluster::body::from_shared(nullptr).empty());

    static constexpr std::string_view text = "static";
    cluster::body view = cluster::body::from_view(text);
    CHECK(view.which() == cluster::body::kind::view);
    CHECK(view.bytes().data() == text.data());
    CHECK(view.size() == 6);
  }

  TEST_CASE("body: a file body owns its descriptor; a copy holds a duplicate; appending to it throws") {
    temp_dir dir("body");
    write_file(dir / "f.txt", "0123456789");
    int fd = ::open((dir / "f.txt").c_str(), O_RDONLY | O_CLOEXEC);
    REQUIRE(fd >= 0);
    int copy_fd = -1;
    {
      cluster::body file = cluster::body::from_file(cluster::file_part(fd, 10, example_time));
      CHECK(file.which() == cluster::body::kind::file);
      CHECK(file.size() == 10);
      CHECK(file.bytes().empty());
      CHECK_FALSE(file == "");  // its bytes are on disk
      CHECK_THROWS_AS(file += "x", std::logic_error);
      cluster::body copy = file;
      REQUIRE(copy.file() != nullptr);
      copy_fd = copy.file()->fd();
      CHECK(copy_fd != fd);
      CHECK(copy.file()->modified() == example_time);
      CHECK(fd_open(fd));
      CHECK(fd_open(copy_fd));
    }
    CHECK_FALSE(fd_open(fd));
    CHECK_FALSE(fd_open(copy_fd));
  }

  TEST_CASE("response::file: Content-Type by extension or as given, Last-Modified from the file's mtime") {
    temp_dir dir("file");
    write_file(dir / "index.HTML", "<p>hi</p>");
    set_mtime(dir / "index.HTML", example_time);
    cluster::response res = cluster::response::file(dir / "index.HTML");
    CHECK(res.status == 200);
    CHECK(res.body.which() == cluster::body::kind::file);
    CHECK(res.body.size() == 9);
    CHECK(res.headers.get("Content-Type") == "text/html; charset=utf-8");
    CHECK(res.headers.get("Last-Modified") == "Sun, 06 Nov 1994 08:49:37 GMT");
    cluster::response typed = cluster::response::file(dir / "index.HTML", "text/x-mine");
    CHECK(typed.headers.get("Content-Type") == "text/x-mine");
    CHECK_THROWS_AS(cluster::response::file(dir / "index.HTML", "bad\r\nvalue"), std::invalid_argument);

    using cluster::detail::media_type_for;
    CHECK(media_type_for("a/b/app.mjs") == "text/javascript; charset=utf-8");
    CHECK(media_type_for("x.json") == "application/json");
    CHECK(media_type_for("logo.jpeg") == "image/jpeg");
    CHECK(media_type_for("m.wasm") == "application/wasm");
    CHECK(media_type_for("archive.tar.gz") == "application/octet-stream");
    CHECK(media_type_for(".png") == "application/octet-stream");  // a hidden file's name, not an extension
    CHECK(media_type_for("dir.html/README") == "application/octet-stream");
  }

  TEST_CASE("response::file: a missing file is 404; a directory, a FIFO and an unreadable file are 403") {
    temp_dir dir("file-refused");
    auto check_refused = [](const cluster::response& res, int status) {
      CHECK(res.status == status);
      CHECK(res.body.which() == cluster::body::kind::owned);
      CHECK(res.headers.get("Content-Type") == "text/plain; charset=utf-8");
    };
    check_refused(cluster::response::file(dir / "missing.txt"), 404);
    check_refused(cluster::response::file(dir / "missing/below.txt"), 404);
    check_refused(cluster::response::file(""), 404);
    check_refused(cluster::response::file(std::string("a\0b", 3)), 404);
    check_refused(cluster::response::file(dir.path().string()), 403);
    REQUIRE(::mkfifo((dir / "fifo").c_str(), 0644) == 0);
    check_refused(cluster::response::file(dir / "fifo"), 403);  // and it returned: no wait for a writer
    write_file(dir / "secret", "x");
    REQUIRE(::chmod((dir / "secret").c_str(), 0) == 0);
    if (::geteuid() != 0) {
      check_refused(cluster::response::file(dir / "secret"), 403);
    } else {
      // Root may read any file: ask as nobody, in a child (the directory is
      // not nobody's either, so the open fails with EACCES all the same).
      pid_t child = ::fork();
      REQUIRE(child >= 0);
      if (child == 0) {
        bool ok = ::setgroups(0, nullptr) == 0 && ::setresgid(65534, 65534, 65534) == 0 &&
                  ::setresuid(65534, 65534, 65534) == 0;
        if (ok) {
          cluster::response res = cluster::response::file(dir / "secret");
          ok = res.status == 403 && res.body.which() == cluster::body::kind::owned;
        }
        ::_exit(ok ? 0 : 1);
      }
      int status = 0;
      REQUIRE(::waitpid(child, &status, 0) == child);
      CHECK(WIFEXITED(status));
      CHECK(WEXITSTATUS(status) == 0);  // as nobody: 403 with a text body
    }
  }

  TEST_CASE("bodies on the wire: every kind arrives whole with its length, at any write size") {
    kinds_fixture f(50'000);
    for (std::string_view path : all_kinds) {
      for (std::size_t max_write : {std::size_t{7}, std::size_t{4096}, std::size_t{1} << 30}) {
        CAPTURE(path);
        CAPTURE(max_write);
        auto wire = serve_in_memory(f.handler, f.opts, {get(path) + get("/owned")}, max_write);
        auto out = parse_responses(wire.output);
        CHECK(out.error.empty());
        REQUIRE(out.responses.size() == 2);
        std::string body = expected_body(path, f.content);
        CHECK((out.responses[0].body == body));  // not decomposed: no 100 KB in the log
        CHECK(out.responses[0].header("Content-Length") == std::to_string(body.size()));
        CHECK(out.responses[1].body == small_text);
      }
    }
  }

  TEST_CASE("bodies on the wire: HEAD states the length and sends no body; 204 and 304 send neither") {
    kinds_fixture f(30'000);
    for (std::string_view path : all_kinds) {
      CAPTURE(path);
      std::string in = get(path, "HEAD") + get(std::string(path) + "?204") + get(std::string(path) + "?304") +
                       get("/owned");
      auto wire = serve_in_memory(f.handler, f.opts, {in});
      auto out = parse_responses(wire.output, [](std::size_t i, const wire_response&) { return i == 0; });
      CHECK(out.error.empty());
      REQUIRE(out.responses.size() == 4);
      CHECK(out.responses[0].header("Content-Length") == std::to_string(expected_body(path, f.content).size()));
      CHECK(out.responses[0].body.empty());
      CHECK(out.responses[1].status == 204);
      CHECK_FALSE(out.responses[1].has_header("Content-Length"));
      CHECK(out.responses[2].status == 304);
      CHECK_FALSE(out.responses[2].has_header("Content-Length"));
      CHECK(out.responses[3].body == small_text);
      // Nothing but heads before the last answer: no body bytes leaked.
      if (path != "/owned") CHECK(wire.output.find(expected_body(path, f.content).substr(0, 12)) == std::string::npos);
    }
  }

  TEST_CASE("bodies on the wire: a pipelined batch mixing every kind, past the gathered queue's size, keeps order") {
    kinds_fixture f(20'000);
    std::string in;
    std::vector<std::string_view> order;
    for (int i = 0; i < 43; ++i) {
      // 22 gathered bodies before the first file: the queue of 16 fills.
      std::string_view path = i == 30 || i == 41 ? "/file" : all_kinds[static_cast<std::size_t>(i) % 4];
      order.push_back(path);
      in += get(path);
    }
    for (std::size_t max_write : {std::size_t{1000}, std::size_t{1} << 30}) {
      CAPTURE(max_write);
      auto wire = serve_in_memory(f.handler, f.opts, {in}, max_write);
      auto out = parse_responses(wire.output);
      CHECK(out.error.empty());
      REQUIRE(out.responses.size() == order.size());
      for (std::size_t i = 0; i < order.size(); ++i) {
        CAPTURE(i);
        CHECK((out.responses[i].body == expected_body(order[i], f.content)));
      }
    }
  }

  TEST_CASE("bodies on the wire: a file that shrank after its length was promised closes the connection") {
    temp_dir dir("shrink");
    std::string path = dir / "shrinks.bin";
    auto handler = [&](const cluster::request& req) {
      if (req.path() == "/small") return cluster::response::text("small");
      write_file(path, pattern(40'000));
      cluster::response res = cluster::response::file(path);
      REQUIRE(::truncate(path.c_str(), 10'000) == 0);  // after the open: the head says 40000
      return res;
    };
    cluster::options opts;
    auto wire = serve_in_memory(handler, opts, {get("/") + get("/small")});
    auto out = parse_responses(wire.output);
    CHECK(out.truncated);
    REQUIRE(out.responses.size() == 1);
    CHECK(out.responses[0].header("Content-Length") == "40000");
    CHECK(wire.output.find("small") == std::string::npos);  // the connection closed before it
    CHECK(wire.closed);
  }

  TEST_CASE("sendfile: a 1 MiB file over a loopback socket arrives whole, with its length and Last-Modified") {
    temp_dir dir("sendfile");
    std::string content = pattern(1024 * 1024);
    std::string path = dir / "big.bin";
    write_file(path, content);
    set_mtime(path, example_time);
    std::atomic<int> last_fd{-1};  // written by the server thread
    auto handler = [&](const cluster::request& req) {
      if (req.path() == "/small") return cluster::response::text("small");
      cluster::response res = cluster::response::file(path);
      last_fd = res.body.file()->fd();
      return res;
    };
    loopback_server server(handler);
    response_reader reader;
    auto read_one = [&] {
      std::vector<char> buf(256 * 1024);
      auto done = [&] { return !reader.responses().empty() && reader.responses().front().complete; };
      for (int i = 0; i < 10'000 && !done(); ++i) {
        asio::error_code ec;
        std::size_t n = test_support::read_some(server.client(), asio::buffer(buf), ec);
        REQUIRE_FALSE(ec);
        auto step = reader.feed(std::string_view(buf.data(), n), response_reader::stop_at::message);
        REQUIRE(step.used == n);
      }
      REQUIRE(done());
      REQUIRE(reader.responses().size() == 1);
      http_response r = std::move(reader.responses().front());
      reader.responses().clear();
      return r;
    };
    for (int round = 0; round < 2; ++round) {  // the connection stays usable after a file
      asio::error_code ec;
      test_support::write_all(server.client(), get("/"), ec);
      REQUIRE_FALSE(ec);
      http_response res = read_one();
      CHECK(res.status == 200);
      CHECK(res.header("Content-Length") == "1048576");
      CHECK(res.header("Last-Modified") == "Sun, 06 Nov 1994 08:49:37 GMT");
      CHECK(res.header("Content-Type") == "application/octet-stream");
      CHECK(res.body.size() == content.size());
      CHECK((res.body == content));  // not decomposed: a mismatch would print two MiB
    }
    // Once the next request has been answered the file's descriptor is closed.
    asio::error_code ec;
    test_support::write_all(server.client(), get("/small"), ec);
    REQUIRE_FALSE(ec);
    CHECK(read_one().body == "small");
    CHECK_FALSE(fd_open(last_fd));
  }

  TEST_CASE("sendfile: a file cut short while the client is slow closes the connection, with no hang") {
    big_download d;
    // The server has sent at most what the buffers hold and waits to send
    // more: the rest of the file disappears.
    REQUIRE(::truncate(d.path.c_str(), 0) == 0);
    asio::error_code ec;
    std::size_t received = d.received + read_to_end(d.server.client(), ec);
    CHECK(ec == asio::error::eof);  // closed by the server, not a read timeout
    CHECK(received < static_cast<std::size_t>(big_download::size));
  }

  TEST_CASE("sendfile: a client that stops reading a file is cut off after write_timeout") {
    cluster::options opts;
    opts.write_timeout = std::chrono::milliseconds(200);
    big_download d(opts);
    // The stall itself is what is tested: nothing can be awaited on this
    // side without reading, which would end it. Five write timeouts.
    std::this_thread::sleep_for(std::chrono::milliseconds(1000));
    asio::error_code ec;
    std::size_t received = d.received + read_to_end(d.server.client(), ec);
    CHECK(ec == asio::error::eof);  // the server gave up and closed; the rest never came
    CHECK(received < static_cast<std::size_t>(big_download::size));
  }

  TEST_CASE("request bodies: stored once at their Content-Length; the input buffer stays near 16 KiB") {
    cluster::options opts;
    cluster::detail::request_parser p(opts);
    std::string body = pattern(64 * 1024);
    std::string in = "POST /up HTTP/1.1\r\nHost: h\r\nContent-Length: 65536\r\n\r\n" + body;
    std::size_t pos = 0;
    std::size_t largest_input = 0;
    bool complete = false;
    for (int guard = 0; guard < 10'000 && !complete; ++guard) {
      auto st = p.next();
      if (st == cluster::detail::parse_state::message) {
        complete = true;
        break;
      }
      REQUIRE(st == cluster::detail::parse_state::need_more);
      REQUIRE(pos < in.size());
      auto space = p.read_space();  // a socket fills what is offered
      std::size_t n = std::min(space.size(), in.size() - pos);
      std::memcpy(space.data(), in.data() + pos, n);
      p.commit(n);
      pos += n;
      largest_input = std::max(largest_input, p.input().capacity());
    }
    REQUIRE(complete);
    CHECK((p.current().body() == body));
    std::string taken = p.current().take_body();
    CHECK(taken.capacity() == body.size());  // reserved once from Content-Length, never doubled
    CHECK(largest_input <= 16 * 1024 + 4096);
  }
}
