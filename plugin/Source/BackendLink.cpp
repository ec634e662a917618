#include "BackendLink.h"

#include <fcntl.h>
#include <poll.h>
#include <signal.h>
#include <spawn.h>
#include <sys/eventfd.h>
#include <sys/mman.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/un.h>
#include <sys/wait.h>
#include <unistd.h>

#include <algorithm>
#include <cerrno>
#include <chrono>
#include <cstdio>
#include <cstdlib>
#include <cstring>

extern char** environ;

namespace flowdec {

namespace {

void logLine(const std::string& s) { std::fprintf(stderr, "flowdec plugin: %s\n", s.c_str()); }

std::int64_t nowMs() {
    using namespace std::chrono;
    return duration_cast<milliseconds>(steady_clock::now().time_since_epoch()).count();
}

}  // namespace

std::string backendSocketPath() {
    if (const char* env = std::getenv("FLOWDEC_SOCKET"); env && *env) return env;
    // $XDG_RUNTIME_DIR only when it is an absolute path to a directory of this user
    if (const char* rt = std::getenv("XDG_RUNTIME_DIR"); rt && rt[0] == '/') {
        struct stat st {};
        if (stat(rt, &st) == 0 && S_ISDIR(st.st_mode) && st.st_uid == getuid())
            return std::string(rt) + "/flowdec/backend.sock";
    }
    return "/tmp/flowdec-" + std::to_string(getuid()) + "/backend.sock";
}

std::string backendLogPath() {
    const char* state = std::getenv("XDG_STATE_HOME");
    if (state && state[0] == '/') return std::string(state) + "/flowdec/backend.log";
    const char* home = std::getenv("HOME");
    if (home && home[0] == '/') return std::string(home) + "/.local/state/flowdec/backend.log";
    return "/tmp/flowdec-" + std::to_string(getuid()) + "/backend.log";
}

namespace {

// mkdir -p for the log's directory (new directories 0700).
void makeParents(const std::string& file) {
    for (std::size_t i = 1; i < file.size(); ++i)
        if (file[i] == '/') mkdir(file.substr(0, i).c_str(), 0700);
}

// Open the backend's log for appending (started afresh beyond 1 MiB); -1 on failure.
int openLog(const std::string& path) {
    makeParents(path);
    struct stat st {};
    const bool big = stat(path.c_str(), &st) == 0 && st.st_size > (1 << 20);
    return ::open(path.c_str(), O_WRONLY | O_CREAT | O_APPEND | O_CLOEXEC | O_NOFOLLOW | (big ? O_TRUNC : 0), 0600);
}

// The last non-empty line of a file (its last 4 KiB), e.g. Python's final error line.
std::string lastLine(const std::string& path) {
    const int fd = ::open(path.c_str(), O_RDONLY | O_CLOEXEC);
    if (fd < 0) return {};
    char buf[4096];
    const off_t size = lseek(fd, 0, SEEK_END);
    const off_t from = std::max<off_t>(0, size - static_cast<off_t>(sizeof(buf)));
    const ssize_t n = pread(fd, buf, sizeof(buf), from);
    ::close(fd);
    if (n <= 0) return {};
    std::string s(buf, static_cast<std::size_t>(n));
    for (;;) {  // the plugins' own "--- flowdec plugin ... starts" lines say nothing new
        while (!s.empty() && (s.back() == '\n' || s.back() == ' ')) s.pop_back();
        const std::size_t nl = s.rfind('\n');
        const std::string line = nl == std::string::npos ? s : s.substr(nl + 1);
        if (line.rfind("--- flowdec plugin", 0) != 0) return line;
        if (nl == std::string::npos) return {};
        s.resize(nl);
    }
}

}  // namespace

bool splitCommand(const std::string& cmd, std::vector<std::string>* words) {
    words->clear();
    std::string word;
    bool inWord = false;
    for (std::size_t i = 0; i < cmd.size(); ++i) {
        const char c = cmd[i];
        if (c == ' ' || c == '\t' || c == '\n') {
            if (inWord) words->push_back(word);
            word.clear();
            inWord = false;
        } else if (c == '\'') {
            const std::size_t end = cmd.find('\'', i + 1);
            if (end == std::string::npos) return false;
            word.append(cmd, i + 1, end - i - 1);
            i = end;
            inWord = true;
        } else if (c == '"') {
            for (++i;; ++i) {
                if (i >= cmd.size()) return false;
                if (cmd[i] == '"') break;
                if (cmd[i] == '\\' && i + 1 < cmd.size() &&
                    std::strchr("\"\\$`", cmd[i + 1]) != nullptr)
                    ++i;
                word += cmd[i];
            }
            inWord = true;
        } else if (c == '\\') {
            if (i + 1 < cmd.size()) word += cmd[++i];
            inWord = true;
        } else {
            word += c;
            inWord = true;
        }
    }
    if (inWord) words->push_back(word);
    return true;
}

std::vector<std::string> defaultBackendCommand() {
    const char* env = std::getenv("FLOWDEC_BACKEND_CMD");
    if (env == nullptr) return {"python3", "-I", "-m", "flowdec", "serve"};
    std::vector<std::string> argv;
    if (!splitCommand(env, &argv)) {
        logLine("FLOWDEC_BACKEND_CMD has an unterminated quote: not starting a backend");
        argv.clear();
    }
    return argv;
}

// ---- SharedRegion -----------------------------------------------------------------------------
SharedRegion::~SharedRegion() { destroy(); }

bool SharedRegion::create(protocol::Layout layout, std::uint32_t rate, std::string* error) {
    destroy();
    std::string why;
    memFd = protocol::create_region_fd("flowdec-plugin", layout.total_bytes(), &why);  // sealed
    if (memFd < 0) {
        *error = "shared memory: " + why;
        destroy();
        return false;
    }
    void* p = mmap(nullptr, layout.total_bytes(), PROT_READ | PROT_WRITE, MAP_SHARED, memFd, 0);
    if (p == MAP_FAILED) {
        *error = std::string("mmap: ") + std::strerror(errno);
        destroy();
        return false;
    }
    std::memset(p, 0, layout.total_bytes());
    mlock(p, layout.total_bytes());  // best effort: no page faults on the audio thread
    region = protocol::Region(p, layout);
    region.initialise(rate);
    sampleRate = rate;
    inEvent = eventfd(0, EFD_CLOEXEC | EFD_NONBLOCK);
    outEvent = eventfd(0, EFD_CLOEXEC | EFD_NONBLOCK);
    if (inEvent < 0 || outEvent < 0) {
        *error = std::string("eventfd: ") + std::strerror(errno);
        destroy();
        return false;
    }
    return true;
}

void SharedRegion::destroy() {
    if (region.mapped()) munmap(region.control(), region.layout().total_bytes());
    region = protocol::Region();
    for (int* fd : {&memFd, &inEvent, &outEvent}) {
        if (*fd >= 0) ::close(*fd);
        *fd = -1;
    }
}

// ---- BackendLink ------------------------------------------------------------------------------
void BackendLink::start(const SharedRegion* shm, Config config) {
    stop();
    shm_ = shm;
    config_ = std::move(config);
    quit_ = false;
    gaveUp_ = false;
    wakeFd_ = eventfd(0, EFD_CLOEXEC | EFD_NONBLOCK);
    thread_ = std::thread([this] { run(); });
}

void BackendLink::stop() {
    if (!thread_.joinable()) return;
    quit_ = true;
    if (wakeFd_ >= 0) {
        const std::uint64_t one = 1;
        (void)!write(wakeFd_, &one, sizeof(one));
    }
    cv_.notify_all();
    thread_.join();
    ::close(wakeFd_);
    wakeFd_ = -1;
    connected_ = false;
    reapChild();
}

std::string BackendLink::lastError() const {
    std::lock_guard<std::mutex> lock(mutex_);
    return error_;
}

void BackendLink::setError(const std::string& e) {
    {
        std::lock_guard<std::mutex> lock(mutex_);
        if (e == error_) return;
        error_ = e;
    }
    logLine(e);
}

bool BackendLink::waitConnected(int timeoutMs) {
    std::unique_lock<std::mutex> lock(mutex_);
    cv_.wait_for(lock, std::chrono::milliseconds(timeoutMs),
                 [this] { return connected_.load() || gaveUp_.load() || quit_.load(); });
    return connected_.load();
}

bool BackendLink::sleepFor(int ms) {
    for (int left = ms; left > 0 && !quit_.load(); left -= 100) {
        pollfd p{wakeFd_, POLLIN, 0};
        poll(&p, 1, std::min(left, 100));
    }
    return !quit_.load();
}

int BackendLink::tryConnect() {
    const int fd = socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0);
    if (fd < 0) return -1;
    sockaddr_un addr{};
    addr.sun_family = AF_UNIX;
    std::strncpy(addr.sun_path, config_.socketPath.c_str(), sizeof(addr.sun_path) - 1);
    if (connect(fd, reinterpret_cast<sockaddr*>(&addr), sizeof(addr)) != 0) {
        ::close(fd);
        return -1;
    }
    ucred cred{};
    socklen_t len = sizeof(cred);
    if (getsockopt(fd, SOL_SOCKET, SO_PEERCRED, &cred, &len) != 0 || cred.uid != getuid()) {
        setError("refusing a backend socket owned by another user: " + config_.socketPath);
        ::close(fd);
        return -1;
    }
    return fd;
}

bool BackendLink::handshake(int fd) {
    const auto& lay = shm_->region.layout();
    const protocol::Hello hello = protocol::make_hello(lay.channels, shm_->sampleRate, lay.chunk_frames,
                                                       lay.slots, config_.maxBlock,
                                                       static_cast<std::uint32_t>(getpid()), "flowdec-plugin");
    int fds[3] = {shm_->memFd, shm_->inEvent, shm_->outEvent};
    char control[CMSG_SPACE(sizeof(fds))] = {};
    iovec iov{const_cast<protocol::Hello*>(&hello), sizeof(hello)};
    msghdr msg{};
    msg.msg_iov = &iov;
    msg.msg_iovlen = 1;
    msg.msg_control = control;
    msg.msg_controllen = sizeof(control);
    cmsghdr* c = CMSG_FIRSTHDR(&msg);
    c->cmsg_level = SOL_SOCKET;
    c->cmsg_type = SCM_RIGHTS;
    c->cmsg_len = CMSG_LEN(sizeof(fds));
    std::memcpy(CMSG_DATA(c), fds, sizeof(fds));
    if (sendmsg(fd, &msg, MSG_NOSIGNAL) != static_cast<ssize_t>(sizeof(hello))) {
        setError(std::string("handshake send failed: ") + std::strerror(errno));
        return false;
    }
    protocol::Reply reply{};
    std::size_t got = 0;
    const std::int64_t deadline = nowMs() + config_.replyTimeoutMs;
    while (got < sizeof(reply)) {
        pollfd p[2] = {{fd, POLLIN, 0}, {wakeFd_, POLLIN, 0}};
        const int left = static_cast<int>(std::max<std::int64_t>(0, deadline - nowMs()));
        if (poll(p, 2, std::min(left, 200)) < 0 && errno != EINTR) return false;
        if (quit_) return false;
        if (p[0].revents & (POLLIN | POLLHUP | POLLERR)) {
            const ssize_t n = recv(fd, reinterpret_cast<char*>(&reply) + got, sizeof(reply) - got, 0);
            if (n <= 0) {
                setError("backend closed the connection during the handshake");
                return false;
            }
            got += static_cast<std::size_t>(n);
        } else if (left == 0) {
            setError("backend did not answer the handshake in time");
            return false;
        }
    }
    reply.message[sizeof(reply.message) - 1] = '\0';
    if (reply.magic != protocol::kMagic) {
        setError("malformed reply from the backend");
        return false;
    }
    if (reply.status != protocol::kStatusOk) {
        setError(std::string("backend refused: ") + reply.message);
        return false;
    }
    if (reply.version != protocol::kVersion) {
        setError("backend speaks protocol version " + std::to_string(reply.version));
        return false;
    }
    latencies_.store(std::uint64_t{reply.latency_samples} | std::uint64_t{reply.latency_postfilter_samples} << 32,
                     std::memory_order_relaxed);
    return true;
}

void BackendLink::reapChild() {
    if (child_ <= 0) return;
    int status = 0;
    const pid_t r = waitpid(child_, &status, WNOHANG);
    if (r == child_) {
        // Exit status 3: another backend already serves the socket (not a failure).
        if (!(WIFEXITED(status) && (WEXITSTATUS(status) == 0 || WEXITSTATUS(status) == 3))) {
            const std::string why = lastLine(backendLogPath());
            setError("`" + shownCommand() + "` exited with " +
                     std::to_string(WIFEXITED(status) ? WEXITSTATUS(status) : 128 + WTERMSIG(status)) +
                     (why.empty() ? "" : " (" + why + ")"));
            gaveUp_ = true;
            cv_.notify_all();
        }
        child_ = -1;
    } else if (r < 0) {
        child_ = -1;
    }
}

std::string BackendLink::shownCommand() const {
    std::string shown;
    for (const std::string& a : config_.command) shown += (shown.empty() ? "" : " ") + a;
    return shown;
}

void BackendLink::spawnBackend() {
    if (config_.command.empty()) {
        setError("starting a backend is disabled (FLOWDEC_BACKEND_CMD is empty or false) and none answers on " +
                 config_.socketPath);
        gaveUp_ = true;
        cv_.notify_all();
        return;
    }
    // No shell, and not from the host's working directory: nothing there can take its place.
    std::vector<char*> argv;
    for (const std::string& a : config_.command) argv.push_back(const_cast<char*>(a.c_str()));
    argv.push_back(nullptr);
    // Detached from the host's standard streams (a host writing to a pipe must see its end
    // when it exits, not when the backend does): output goes to the log file.
    const std::string logPath = backendLogPath();
    const int logFd = openLog(logPath);
    if (logFd >= 0) {
        const std::string head = "--- flowdec plugin (pid " + std::to_string(getpid()) + ") starts: " + shownCommand() + "\n";
        (void)!::write(logFd, head.data(), head.size());
    }
    posix_spawn_file_actions_t actions;
    posix_spawn_file_actions_init(&actions);
    posix_spawn_file_actions_addopen(&actions, 0, "/dev/null", O_RDONLY, 0);
    if (logFd >= 0) {
        posix_spawn_file_actions_adddup2(&actions, logFd, 1);
        posix_spawn_file_actions_adddup2(&actions, logFd, 2);
    } else {
        posix_spawn_file_actions_addopen(&actions, 1, "/dev/null", O_WRONLY, 0);
        posix_spawn_file_actions_addopen(&actions, 2, "/dev/null", O_WRONLY, 0);
    }
#if defined(__GLIBC__) && (__GLIBC__ > 2 || (__GLIBC__ == 2 && __GLIBC_MINOR__ >= 29))
    posix_spawn_file_actions_addchdir_np(&actions, "/");
#endif
#if defined(__GLIBC__) && (__GLIBC__ > 2 || (__GLIBC__ == 2 && __GLIBC_MINOR__ >= 34))
    posix_spawn_file_actions_addclosefrom_np(&actions, 3);  // none of the host's files
#endif
    posix_spawnattr_t attr;
    posix_spawnattr_init(&attr);
    posix_spawnattr_setflags(&attr, POSIX_SPAWN_SETSID);  // survives the host's process group
    pid_t pid = -1;
    // The backend listens where this plugin connects, whatever the environment says now.
    std::vector<std::string> envStrings;
    for (char** e = environ; e != nullptr && *e != nullptr; ++e)
        if (std::strncmp(*e, "FLOWDEC_SOCKET=", 15) != 0) envStrings.emplace_back(*e);
    envStrings.push_back("FLOWDEC_SOCKET=" + config_.socketPath);
    std::vector<char*> envp;
    for (std::string& e : envStrings) envp.push_back(e.data());
    envp.push_back(nullptr);
    const int rc = posix_spawnp(&pid, argv[0], &actions, &attr, argv.data(), envp.data());
    posix_spawnattr_destroy(&attr);
    posix_spawn_file_actions_destroy(&actions);
    if (logFd >= 0) ::close(logFd);
    if (rc != 0) {
        setError("cannot run `" + shownCommand() + "`: " + std::strerror(rc));
        gaveUp_ = true;
        cv_.notify_all();
        return;
    }
    child_ = pid;
    logLine("started the backend: " + shownCommand() + " (log: " + logPath + ")");
}

void BackendLink::run() {
    int backoffMs = 50;
    std::int64_t nextSpawn = 0;
    int spawnBackoffMs = 2000;
    while (!quit_) {
        reapChild();
        const int fd = tryConnect();
        if (fd < 0) {
            if (child_ < 0 && nowMs() >= nextSpawn) {
                spawnBackend();
                nextSpawn = nowMs() + spawnBackoffMs;
                spawnBackoffMs = std::min(spawnBackoffMs * 2, 30000);
            }
            if (!sleepFor(backoffMs)) break;
            backoffMs = std::min(backoffMs * 2, 1000);
            continue;
        }
        if (!handshake(fd)) {
            ::close(fd);
            if (!sleepFor(2000)) break;
            continue;
        }
        const std::uint64_t one = 1;  // wake an offline render waiting for the backend
        (void)!write(shm_->outEvent, &one, sizeof(one));
        backoffMs = 50;
        spawnBackoffMs = 2000;
        gaveUp_ = false;
        connections_.fetch_add(1);
        everConnected_ = true;
        {
            std::lock_guard<std::mutex> lock(mutex_);
            connected_.store(true, std::memory_order_release);
            error_.clear();
        }
        cv_.notify_all();
        // Watch the socket: any readable event is the backend going away.
        while (!quit_) {
            pollfd p[2] = {{fd, POLLIN, 0}, {wakeFd_, POLLIN, 0}};
            if (poll(p, 2, 100) < 0 && errno != EINTR) break;
            reapChild();
            if (p[0].revents) {
                char buf[64];
                if (recv(fd, buf, sizeof(buf), MSG_DONTWAIT) <= 0) break;
            }
        }
        connected_.store(false, std::memory_order_release);
        ::close(fd);
        if (!quit_) {
            setError("backend connection lost; reconnecting");
            const std::uint64_t one = 1;  // wake an offline render waiting for output
            (void)!write(shm_->outEvent, &one, sizeof(one));
        }
    }
}

}  // namespace flowdec
