// Plugin <-> backend protocol: shared-memory SPSC chunk rings, control block and handshake.
//
// Used by both sides: the plugin (plugin/, C++, no Python) and the backend (flowdec serve,
// through the pybind11 core). Header-only and free of pybind11 so the plugin can include it.
//
// Transport
//   * One backend per user listens on a Unix stream socket (directory 0700, socket 0600,
//     the peer's uid checked with SO_PEERCRED on both ends).
//   * Each plugin instance creates one anonymous shared memory region (memfd_create) and two
//     eventfds (input ready, output ready), and passes them with a Hello message over the
//     socket (SCM_RIGHTS). Nothing is created in /dev/shm, so a dying host leaves nothing.
//   * The memfd must be sealed against shrinking (F_SEAL_SHRINK, create_region_fd below)
//     before the Hello: the backend maps memory a client owns, and a client that shrank it
//     afterwards would turn every access into a SIGBUS. The backend refuses unsealed ones
//     (check_region_fd) and doorbells that are not eventfds.
//   * The backend answers with a Reply (status, a message, and its stream latency in samples
//     for each processing path: the codec alone and with the postfilter; the plugin reports
//     the one of the path in use) and keeps the socket open: its hang-up is how the plugin
//     learns the backend is gone.
//
// Shared memory: [Control][input ring: slots x (SlotHeader + channels*chunk floats)][output ring]
//   Rings are lock-free single-producer/single-consumer: head is written only by the
//   producer, tail only by the consumer, both monotonically increasing 64-bit positions.
//   Every chunk carries its block counter (index): the plugin asks for output chunk j and
//   discards older ones, so a late backend leaves gaps (dry fill) but never shifts timing.
//
// Versioning: the first 8 bytes of Hello and Reply (magic, version) never change, nor does
// where a Reply's status and message start (bytes 8 and 16). A peer speaking another version
// gets a Reply with status kStatusVersion and a message it can read.
// Version 2: the Reply carries the postfilter path's latency too (version 1: one latency).
#pragma once

#include <fcntl.h>
#include <sys/mman.h>
#include <sys/stat.h>
#include <unistd.h>

#include <atomic>
#include <cerrno>
#include <cstddef>
#include <cstdint>
#include <cstring>
#include <string>

namespace flowdec {
namespace protocol {

constexpr std::uint32_t kMagic = 0x43454446u;  // "FDEC" little-endian
constexpr std::uint32_t kVersion = 2;
constexpr std::uint32_t kMaxChannels = 16;
constexpr std::uint32_t kMaxChunkFrames = 1u << 16;
constexpr std::uint32_t kMaxSlots = 1024;

// Reply status codes.
constexpr std::int32_t kStatusOk = 0;
constexpr std::int32_t kStatusVersion = 1;    // protocol version mismatch
constexpr std::int32_t kStatusMalformed = 2;  // bad magic, size or fields
constexpr std::int32_t kStatusBadShm = 3;     // shared memory missing or of the wrong size
constexpr std::int32_t kStatusBackend = 4;    // backend could not serve (model, engine)

static_assert(std::atomic<std::uint64_t>::is_always_lock_free,
              "the rings need lock-free 64-bit atomics (they live in shared memory)");

// Per-chunk header. Input chunks carry the plugin's settings so a change applies exactly
// at a chunk boundary; epoch increments on reset() (the backend then resets its stream).
struct SlotHeader {
    std::uint64_t index;   // block counter: chunk number since the plugin instance started
    std::uint64_t seed;    // postfilter noise seed
    std::uint32_t epoch;   // reset generation
    std::uint32_t nfe;     // postfilter solver steps
    float bitrate;         // kbit/s per channel
    std::uint32_t flags;   // kFlagPostfilter
    std::uint32_t status;  // output: 0 ok, else the backend failed this chunk (plugin dry-fills)
    std::uint32_t reserved[7];
};
static_assert(sizeof(SlotHeader) == 64, "SlotHeader layout is part of the protocol");
constexpr std::uint32_t kFlagPostfilter = 1u;

struct alignas(64) Control {
    std::uint32_t magic;
    std::uint32_t version;
    std::uint32_t channels;
    std::uint32_t chunk_frames;
    std::uint32_t slots;
    std::uint32_t sample_rate;
    std::uint64_t total_bytes;
    alignas(64) std::atomic<std::uint64_t> in_head;   // plugin writes
    alignas(64) std::atomic<std::uint64_t> in_tail;   // backend writes
    alignas(64) std::atomic<std::uint64_t> out_head;  // backend writes
    alignas(64) std::atomic<std::uint64_t> out_tail;  // plugin writes
    // Statistics, written by one side each (relaxed), read by the other for reports.
    alignas(64) std::atomic<std::uint64_t> underruns;    // plugin: output chunks dry-filled
    std::atomic<std::uint64_t> dropped;                  // plugin: input chunks not queued (ring full)
    std::atomic<std::uint64_t> processed;                // backend: chunks processed
    std::atomic<std::uint64_t> backend_ns;               // backend: total processing time
};

// Sizes of one region for the given shape (all multiples of 64 bytes).
struct Layout {
    std::uint32_t channels = 0, chunk_frames = 0, slots = 0;

    std::size_t slot_bytes() const {
        std::size_t b = sizeof(SlotHeader) + std::size_t{channels} * chunk_frames * sizeof(float);
        return (b + 63) / 64 * 64;
    }
    std::size_t ring_bytes() const { return slot_bytes() * slots; }
    std::size_t control_bytes() const { return (sizeof(Control) + 63) / 64 * 64; }
    std::size_t total_bytes() const { return control_bytes() + 2 * ring_bytes(); }
    bool valid() const {
        return channels >= 1 && channels <= kMaxChannels && chunk_frames >= 1 &&
               chunk_frames <= kMaxChunkFrames && slots >= 2 && slots <= kMaxSlots;
    }
};

// A view of one mapped region (mapping is the owner's business).
class Region {
public:
    Region() = default;
    Region(void* base, Layout layout) : base_(static_cast<unsigned char*>(base)), layout_(layout) {}

    // Write the control header of a fresh (zeroed) region. Plugin side, before handing it over.
    void initialise(std::uint32_t sample_rate) {
        Control* c = control();
        new (c) Control{};
        c->magic = kMagic;
        c->version = kVersion;
        c->channels = layout_.channels;
        c->chunk_frames = layout_.chunk_frames;
        c->slots = layout_.slots;
        c->sample_rate = sample_rate;
        c->total_bytes = layout_.total_bytes();
    }

    // Empty string when the control header matches this layout, else what is wrong.
    std::string check() const {
        const Control* c = control();
        if (c->magic != kMagic) return "shared memory has no flowdec header";
        if (c->version != kVersion) return "shared memory is protocol version " + std::to_string(c->version);
        if (c->channels != layout_.channels || c->chunk_frames != layout_.chunk_frames ||
            c->slots != layout_.slots || c->total_bytes != layout_.total_bytes())
            return "shared memory header does not match the handshake";
        return {};
    }

    Control* control() const { return reinterpret_cast<Control*>(base_); }
    const Layout& layout() const { return layout_; }
    bool mapped() const { return base_ != nullptr; }

    SlotHeader* in_slot(std::uint64_t pos) const { return slot(layout_.control_bytes(), pos); }
    SlotHeader* out_slot(std::uint64_t pos) const {
        return slot(layout_.control_bytes() + layout_.ring_bytes(), pos);
    }
    static float* samples(SlotHeader* h) { return reinterpret_cast<float*>(h + 1); }

private:
    SlotHeader* slot(std::size_t offset, std::uint64_t pos) const {
        return reinterpret_cast<SlotHeader*>(base_ + offset + (pos % layout_.slots) * layout_.slot_bytes());
    }
    unsigned char* base_ = nullptr;
    Layout layout_{};
};

// Producer / consumer halves of one ring. Each side owns exactly one role per ring.
// Producer: slot = begin_write(); fill it; commit_write().  Consumer: peek(); pop().
struct RingRef {
    std::atomic<std::uint64_t>* head;
    std::atomic<std::uint64_t>* tail;
    std::uint32_t slots;

    // Producer: position to fill, or UINT64_MAX when the ring is full.
    std::uint64_t writable() const {
        const std::uint64_t h = head->load(std::memory_order_relaxed);
        const std::uint64_t t = tail->load(std::memory_order_acquire);
        return h - t >= slots ? UINT64_MAX : h;
    }
    void commit_write(std::uint64_t pos) const { head->store(pos + 1, std::memory_order_release); }

    // Consumer: position to read, or UINT64_MAX when the ring is empty.
    std::uint64_t readable() const {
        const std::uint64_t t = tail->load(std::memory_order_relaxed);
        const std::uint64_t h = head->load(std::memory_order_acquire);
        return t >= h ? UINT64_MAX : t;
    }
    void commit_read(std::uint64_t pos) const { tail->store(pos + 1, std::memory_order_release); }
    // Consumer: drop everything queued (used by a backend attaching to a running plugin).
    void skip_all() const {
        tail->store(head->load(std::memory_order_acquire), std::memory_order_release);
    }
    std::uint64_t queued() const {
        return head->load(std::memory_order_acquire) - tail->load(std::memory_order_acquire);
    }
};

inline RingRef input_ring(const Region& r) {
    return {&r.control()->in_head, &r.control()->in_tail, r.layout().slots};
}
inline RingRef output_ring(const Region& r) {
    return {&r.control()->out_head, &r.control()->out_tail, r.layout().slots};
}

// ---- the region's file descriptor ---------------------------------------------------------
// Seals of a region: its size is fixed for good (the backend requires F_SEAL_SHRINK).
constexpr int kRegionSeals = F_SEAL_SHRINK | F_SEAL_GROW | F_SEAL_SEAL;

// Plugin side: a new memfd of `bytes` bytes (zero-filled), sealed with kRegionSeals.
// Returns the fd, or -1 with `why` set.
inline int create_region_fd(const char* name, std::size_t bytes, std::string* why) {
    const int fd = memfd_create(name, MFD_CLOEXEC | MFD_ALLOW_SEALING);
    if (fd < 0) {
        *why = std::string("memfd_create: ") + std::strerror(errno);
        return -1;
    }
    if (ftruncate(fd, static_cast<off_t>(bytes)) != 0) {
        *why = std::string("ftruncate: ") + std::strerror(errno);
        ::close(fd);
        return -1;
    }
    if (fcntl(fd, F_ADD_SEALS, kRegionSeals) != 0) {
        *why = std::string("sealing the shared memory: ") + std::strerror(errno);
        ::close(fd);
        return -1;
    }
    return fd;
}

// Backend side: empty when `fd` is a memfd of exactly `bytes` bytes that can no longer shrink,
// else what is wrong (a message for the client). Seals only ever get added, so once this
// passes the mapping stays backed for as long as it exists.
inline std::string check_region_fd(int fd, std::size_t bytes) {
    const int seals = fcntl(fd, F_GET_SEALS);
    if (seals < 0)
        return std::string("shared memory is not a sealable memfd (F_GET_SEALS: ") + std::strerror(errno) + ")";
    if ((seals & F_SEAL_SHRINK) == 0)
        return "shared memory is not sealed against shrinking: create the memfd with "
               "MFD_ALLOW_SEALING and add F_SEAL_SHRINK before the handshake";
    struct stat st {};
    if (fstat(fd, &st) != 0) return std::string("fstat: ") + std::strerror(errno);
    if (static_cast<std::uint64_t>(st.st_size) != bytes)
        return "shared memory is " + std::to_string(st.st_size) + " bytes, expected " + std::to_string(bytes);
    return {};
}

// ---- handshake ---------------------------------------------------------------------------
// Sent by the plugin with 3 file descriptors: [shared memory, input eventfd, output eventfd].
struct Hello {
    std::uint32_t magic;    // kMagic          (stable across versions)
    std::uint32_t version;  // kVersion        (stable across versions)
    std::uint32_t channels;
    std::uint32_t sample_rate;
    std::uint32_t chunk_frames;
    std::uint32_t slots;
    std::uint64_t shm_bytes;
    std::uint32_t max_block;  // largest host block (samples), informational
    std::uint32_t pid;        // plugin host process, informational
    char client[32];          // NUL-terminated name, informational
};
static_assert(sizeof(Hello) == 72, "Hello layout is part of the protocol");

// Latencies: the backend's stream latency at the plugin's rate, chunk and channel count, for
// each path (constant per path; a model without a postfilter gives the codec's for both).
struct Reply {
    std::uint32_t magic;    // kMagic   (stable across versions)
    std::uint32_t version;  // kVersion (stable across versions)
    std::int32_t status;    // kStatus* (stable across versions)
    std::uint32_t latency_samples;             // the codec path (postfilter off)
    char message[236];                         // NUL-terminated, human-readable (stable offset)
    std::uint32_t latency_postfilter_samples;  // the postfilter path
};
static_assert(sizeof(Reply) == 256, "Reply layout is part of the protocol");
static_assert(offsetof(Reply, status) == 8 && offsetof(Reply, message) == 16,
              "a refusal's status and message stay where every version reads them");

inline Hello make_hello(std::uint32_t channels, std::uint32_t sample_rate, std::uint32_t chunk_frames,
                        std::uint32_t slots, std::uint32_t max_block, std::uint32_t pid,
                        const char* client) {
    Hello h{};
    h.magic = kMagic;
    h.version = kVersion;
    h.channels = channels;
    h.sample_rate = sample_rate;
    h.chunk_frames = chunk_frames;
    h.slots = slots;
    h.shm_bytes = Layout{channels, chunk_frames, slots}.total_bytes();
    h.max_block = max_block;
    h.pid = pid;
    std::strncpy(h.client, client ? client : "", sizeof(h.client) - 1);
    return h;
}

inline Reply make_reply(std::int32_t status, std::uint32_t latency, std::uint32_t latency_postfilter,
                        const std::string& message) {
    Reply r{};
    r.magic = kMagic;
    r.version = kVersion;
    r.status = status;
    r.latency_samples = latency;
    r.latency_postfilter_samples = latency_postfilter;
    std::strncpy(r.message, message.c_str(), sizeof(r.message) - 1);
    return r;
}

// Validate a received Hello of `size` bytes. Returns kStatusOk or a status with `why` set.
inline std::int32_t check_hello(const void* data, std::size_t size, Hello* out, std::string* why) {
    std::uint32_t head[2] = {0, 0};
    if (size < sizeof(head)) {
        *why = "malformed handshake: " + std::to_string(size) + " bytes";
        return kStatusMalformed;
    }
    std::memcpy(head, data, sizeof(head));
    if (head[0] != kMagic) {
        *why = "malformed handshake: not a flowdec plugin (bad magic)";
        return kStatusMalformed;
    }
    if (head[1] != kVersion) {
        *why = "protocol version mismatch: plugin speaks version " + std::to_string(head[1]) +
               ", this backend speaks version " + std::to_string(kVersion) +
               " (install matching flowdec plugin and package versions)";
        return kStatusVersion;
    }
    if (size != sizeof(Hello)) {
        *why = "malformed handshake: " + std::to_string(size) + " bytes, version " +
               std::to_string(kVersion) + " sends " + std::to_string(sizeof(Hello));
        return kStatusMalformed;
    }
    std::memcpy(out, data, sizeof(Hello));
    out->client[sizeof(out->client) - 1] = '\0';
    const Layout layout{out->channels, out->chunk_frames, out->slots};
    if (!layout.valid() || out->sample_rate < 8000 || out->sample_rate > 384000) {
        *why = "malformed handshake: channels " + std::to_string(out->channels) + ", chunk " +
               std::to_string(out->chunk_frames) + ", slots " + std::to_string(out->slots) +
               ", rate " + std::to_string(out->sample_rate) + " out of range";
        return kStatusMalformed;
    }
    if (out->shm_bytes != layout.total_bytes()) {
        *why = "malformed handshake: shared memory size " + std::to_string(out->shm_bytes) +
               " does not match the layout (" + std::to_string(layout.total_bytes()) + ")";
        return kStatusMalformed;
    }
    return kStatusOk;
}

}  // namespace protocol
}  // namespace flowdec
