// The plugin's side of the backend connection: a supervisor thread that connects to the
// per-user flowdec backend (starting it when none answers, with back-off), sends the
// handshake with the shared memory and eventfds, and watches the socket for hang-up.
// Nothing here runs on the audio thread; the audio thread only reads `connected()`.
#pragma once

#include <atomic>
#include <condition_variable>
#include <cstdint>
#include <functional>
#include <mutex>
#include <string>
#include <thread>
#include <vector>

#include "protocol.hpp"

namespace flowdec {

// The backend's stream latency (samples) of each processing path, from its handshake.
struct PathLatencies {
    std::uint32_t codec = 0;       // the codec alone (postfilter off)
    std::uint32_t postfilter = 0;  // with the postfilter
    std::uint32_t of(bool post) const { return post ? postfilter : codec; }
};

// The per-user socket path, same rules as flowdec.serve.socket_path().
std::string backendSocketPath();
// The argv that starts a backend, run without a shell from "/": FLOWDEC_BACKEND_CMD split into
// words (splitCommand), else `python3 -I -m flowdec serve` (-I: isolated, so no directory the
// host was started from, nor PYTHONPATH, decides which `flowdec` runs). Empty: start none.
std::vector<std::string> defaultBackendCommand();
// Where a backend the plugin starts writes its output (never the host's stdout/stderr):
// $XDG_STATE_HOME/flowdec/backend.log, else ~/.local/state/flowdec/backend.log, else
// /tmp/flowdec-<uid>/backend.log.
std::string backendLogPath();
// Split `cmd` into words as a POSIX shell splits a simple command, without running one: blanks
// separate words, '...' and "..." quote, a backslash escapes the next character; no expansions,
// redirections or operators (so shlex.join's output round-trips). False on an open quote.
bool splitCommand(const std::string& cmd, std::vector<std::string>* words);

// Anonymous shared memory (memfd) + two eventfds, owned by one plugin instance.
class SharedRegion {
public:
    SharedRegion() = default;
    ~SharedRegion();
    SharedRegion(const SharedRegion&) = delete;
    SharedRegion& operator=(const SharedRegion&) = delete;

    bool create(protocol::Layout layout, std::uint32_t sampleRate, std::string* error);
    void destroy();

    protocol::Region region;
    int memFd = -1;
    int inEvent = -1;   // plugin -> backend: input chunks queued
    int outEvent = -1;  // backend -> plugin: output chunks ready
    std::uint32_t sampleRate = 0;
};

class BackendLink {
public:
    struct Config {
        std::string socketPath;
        std::vector<std::string> command;  // argv; empty: never start a backend
        std::uint32_t maxBlock = 0;
        int replyTimeoutMs = 60000;
    };

    BackendLink() = default;
    ~BackendLink() { stop(); }

    void start(const SharedRegion* shm, Config config);
    void stop();

    // Wait (not on the audio thread) until connected, the backend was found unstartable,
    // or the timeout expires. Returns connected().
    bool waitConnected(int timeoutMs);

    bool connected() const { return connected_.load(std::memory_order_acquire); }
    // Both in one word, so that a reconnection never shows half of another backend's pair.
    PathLatencies latencies() const {
        const std::uint64_t v = latencies_.load(std::memory_order_relaxed);
        return {static_cast<std::uint32_t>(v), static_cast<std::uint32_t>(v >> 32)};
    }
    bool everConnected() const { return everConnected_.load(std::memory_order_relaxed); }
    // The start command failed (or none is set) and nothing answers: not worth waiting for.
    bool gaveUp() const { return gaveUp_.load(std::memory_order_relaxed); }
    std::uint64_t connections() const { return connections_.load(std::memory_order_relaxed); }
    std::string lastError() const;

private:
    void run();
    bool sleepFor(int ms);  // false when asked to quit
    int tryConnect();
    bool handshake(int fd);
    void spawnBackend();
    std::string shownCommand() const;
    void reapChild();
    void setError(const std::string& e);

    const SharedRegion* shm_ = nullptr;
    Config config_;
    std::thread thread_;
    int wakeFd_ = -1;
    std::atomic<bool> quit_{false};
    std::atomic<bool> connected_{false};
    std::atomic<bool> everConnected_{false};
    std::atomic<bool> gaveUp_{false};  // the start command failed and nothing answers
    std::atomic<std::uint64_t> latencies_{0};  // codec | postfilter << 32
    std::atomic<std::uint64_t> connections_{0};
    mutable std::mutex mutex_;
    std::condition_variable cv_;
    std::string error_;
    int child_ = -1;
};

}  // namespace flowdec
