// Bindings: the plugin <-> backend protocol (shared-memory rings and handshake, protocol.hpp).
//
// The backend (flowdec.serve) maps each plugin's memfd through ProtocolChannel; all ring
// memory ordering is done here with native atomics, never in Python. The client-side
// methods (create / push_input / pop_output) exist for tests and benchmarks that play the
// plugin's role; a process must use only one role per ring.
#include <sys/mman.h>
#include <sys/stat.h>
#include <unistd.h>

#include <cerrno>
#include <chrono>
#include <cstring>
#include <string>

#include "common.hpp"
#include "protocol.hpp"

namespace flowdec {

namespace {

namespace pr = protocol;

py::bytes to_bytes(const void* p, std::size_t n) {
    return py::bytes(static_cast<const char*>(p), n);
}

py::dict hello_dict(const pr::Hello& h) {
    py::dict d;
    d["channels"] = h.channels;
    d["sample_rate"] = h.sample_rate;
    d["chunk_frames"] = h.chunk_frames;
    d["slots"] = h.slots;
    d["shm_bytes"] = h.shm_bytes;
    d["max_block"] = h.max_block;
    d["pid"] = h.pid;
    d["client"] = std::string(h.client);
    return d;
}

class Channel {
public:
    // Map an existing region (backend side) described by a checked Hello.
    Channel(int fd, const py::bytes& hello) {
        const std::string_view view = hello;
        pr::Hello h{};
        std::string why;
        if (pr::check_hello(view.data(), view.size(), &h, &why) != pr::kStatusOk) raise_value("hello", why);
        const pr::Layout layout{h.channels, h.chunk_frames, h.slots};
        const std::string unsafe = pr::check_region_fd(fd, layout.total_bytes());
        if (!unsafe.empty()) raise_value("fd", unsafe);
        map(fd, layout, false);
        sample_rate_ = h.sample_rate;  // from the checked Hello, never re-read from shared memory
        const std::string bad = region_.check();
        if (!bad.empty()) {
            unmap();
            raise_value("fd", bad);
        }
    }

    // Create a fresh region in a new memfd (client side). The Channel owns the fd.
    static Channel* create(std::uint32_t channels, std::uint32_t sample_rate, std::uint32_t chunk_frames,
                           std::uint32_t slots) {
        const pr::Layout layout{channels, chunk_frames, slots};
        if (!layout.valid()) raise_value("shape", "channels, chunk_frames or slots out of range");
        std::string why;
        const int fd = pr::create_region_fd("flowdec-ring", layout.total_bytes(), &why);
        if (fd < 0) throw std::runtime_error(why);
        auto* c = new Channel();
        c->owns_fd_ = true;
        c->map(fd, layout, true);
        c->region_.initialise(sample_rate);
        c->sample_rate_ = sample_rate;
        return c;
    }

    ~Channel() { close(); }

    void close() {
        unmap();
        if (owns_fd_ && fd_ >= 0) ::close(fd_);
        fd_ = -1;
    }

    int fd() const { return fd_; }
    std::uint32_t channels() const { return region_.layout().channels; }
    std::uint32_t chunk_frames() const { return region_.layout().chunk_frames; }
    std::uint32_t slots() const { return region_.layout().slots; }
    std::uint32_t sample_rate() const {
        ctl();
        return sample_rate_;
    }

    // Backend: next input chunk into `out` ([channels, chunk_frames] float32, C-contiguous).
    // Returns (index, epoch, bitrate, nfe, postfilter, seed) or None when the ring is empty.
    py::object pop_input(py::array_t<float, py::array::c_style>& out) {
        check_block(out, "out");
        const pr::RingRef ring = pr::input_ring(region_);
        pr::SlotHeader h{};
        bool got = false;
        {
            py::gil_scoped_release release;
            const std::uint64_t pos = ring.readable();
            if (pos != UINT64_MAX) {
                pr::SlotHeader* s = region_.in_slot(pos);
                h = *s;
                std::memcpy(out.mutable_data(), pr::Region::samples(s), block_bytes());
                ring.commit_read(pos);
                got = true;
            }
        }
        if (!got) return py::none();
        return py::make_tuple(h.index, h.epoch, h.bitrate, h.nfe, (h.flags & pr::kFlagPostfilter) != 0, h.seed);
    }

    // Backend: publish output chunk `index`. False when the ring is full (plugin not reading).
    bool push_output(std::uint64_t index, std::uint32_t epoch, py::array_t<float, py::array::c_style>& block,
                     std::uint32_t status, std::uint64_t elapsed_ns) {
        check_block(block, "block");
        const pr::RingRef ring = pr::output_ring(region_);
        py::gil_scoped_release release;
        const std::uint64_t pos = ring.writable();
        if (pos == UINT64_MAX) return false;
        pr::SlotHeader* s = region_.out_slot(pos);
        pr::SlotHeader h{};
        h.index = index;
        h.epoch = epoch;
        h.status = status;
        *s = h;
        std::memcpy(pr::Region::samples(s), block.data(), block_bytes());
        ring.commit_write(pos);
        ctl()->processed.fetch_add(1, std::memory_order_relaxed);
        ctl()->backend_ns.fetch_add(elapsed_ns, std::memory_order_relaxed);
        return true;
    }

    // Backend: drop queued input (stale chunks from before this backend attached). Returns count.
    std::uint64_t skip_input() {
        const pr::RingRef ring = pr::input_ring(region_);
        const std::uint64_t n = ring.queued();
        ring.skip_all();
        return n;
    }

    std::uint64_t queued_input() const { return pr::input_ring(region_).queued(); }
    std::uint64_t queued_output() const { return pr::output_ring(region_).queued(); }

    // Client: queue input chunk `index`. False when the ring is full.
    bool push_input(std::uint64_t index, std::uint32_t epoch, py::array_t<float, py::array::c_style>& block,
                    float bitrate, std::uint32_t nfe, bool postfilter, std::uint64_t seed) {
        check_block(block, "block");
        const pr::RingRef ring = pr::input_ring(region_);
        py::gil_scoped_release release;
        const std::uint64_t pos = ring.writable();
        if (pos == UINT64_MAX) {
            ctl()->dropped.fetch_add(1, std::memory_order_relaxed);
            return false;
        }
        pr::SlotHeader* s = region_.in_slot(pos);
        pr::SlotHeader h{};
        h.index = index;
        h.epoch = epoch;
        h.bitrate = bitrate;
        h.nfe = nfe;
        h.flags = postfilter ? pr::kFlagPostfilter : 0u;
        h.seed = seed;
        *s = h;
        std::memcpy(pr::Region::samples(s), block.data(), block_bytes());
        ring.commit_write(pos);
        return true;
    }

    // Client: next output chunk into `out`. Returns (index, epoch, status) or None when empty.
    py::object pop_output(py::array_t<float, py::array::c_style>& out) {
        check_block(out, "out");
        const pr::RingRef ring = pr::output_ring(region_);
        pr::SlotHeader h{};
        bool got = false;
        {
            py::gil_scoped_release release;
            const std::uint64_t pos = ring.readable();
            if (pos != UINT64_MAX) {
                pr::SlotHeader* s = region_.out_slot(pos);
                h = *s;
                std::memcpy(out.mutable_data(), pr::Region::samples(s), block_bytes());
                ring.commit_read(pos);
                got = true;
            }
        }
        if (!got) return py::none();
        return py::make_tuple(h.index, h.epoch, h.status);
    }

    py::dict stats() const {
        py::dict d;
        d["underruns"] = ctl()->underruns.load(std::memory_order_relaxed);
        d["dropped"] = ctl()->dropped.load(std::memory_order_relaxed);
        d["processed"] = ctl()->processed.load(std::memory_order_relaxed);
        d["backend_ns"] = ctl()->backend_ns.load(std::memory_order_relaxed);
        return d;
    }

private:
    Channel() = default;

    pr::Control* ctl() const {
        if (!region_.mapped()) throw std::runtime_error("channel is closed");
        return region_.control();
    }

    std::size_t block_bytes() const {
        return std::size_t{channels()} * chunk_frames() * sizeof(float);
    }

    void check_block(const py::array_t<float, py::array::c_style>& a, const char* name) const {
        ctl();
        if (a.ndim() != 2 || a.shape(0) != channels() || a.shape(1) != chunk_frames())
            raise_value(name, "must be float32 C-contiguous [" + std::to_string(channels()) + ", " +
                                  std::to_string(chunk_frames()) + "]");
    }

    void map(int fd, const pr::Layout& layout, bool fresh) {
        struct stat st {};
        if (fstat(fd, &st) != 0) raise_value("fd", std::string("fstat: ") + std::strerror(errno));
        if (static_cast<std::size_t>(st.st_size) != layout.total_bytes())
            raise_value("fd", "shared memory is " + std::to_string(st.st_size) + " bytes, expected " +
                                  std::to_string(layout.total_bytes()));
        void* p = mmap(nullptr, layout.total_bytes(), PROT_READ | PROT_WRITE, MAP_SHARED, fd, 0);
        if (p == MAP_FAILED) raise_value("fd", std::string("mmap: ") + std::strerror(errno));
        if (fresh) std::memset(p, 0, layout.total_bytes());
        fd_ = fd;
        region_ = pr::Region(p, layout);
    }

    void unmap() {
        if (region_.mapped()) munmap(region_.control(), region_.layout().total_bytes());
        region_ = pr::Region();
    }

    pr::Region region_{};
    int fd_ = -1;
    bool owns_fd_ = false;
    std::uint32_t sample_rate_ = 0;
};

py::tuple py_check_hello(const py::bytes& data) {
    const std::string_view view = data;
    pr::Hello h{};
    std::string why;
    const std::int32_t status = pr::check_hello(view.data(), view.size(), &h, &why);
    if (status != pr::kStatusOk) return py::make_tuple(status, why, py::none());
    return py::make_tuple(status, std::string(), hello_dict(h));
}

py::bytes py_make_hello(std::uint32_t channels, std::uint32_t sample_rate, std::uint32_t chunk_frames,
                        std::uint32_t slots, std::uint32_t max_block, std::uint32_t pid,
                        const std::string& client, std::uint32_t version) {
    pr::Hello h = pr::make_hello(channels, sample_rate, chunk_frames, slots, max_block, pid, client.c_str());
    h.version = version;
    return to_bytes(&h, sizeof(h));
}

py::bytes py_make_reply(std::int32_t status, std::uint32_t latency, std::uint32_t latency_postfilter,
                        const std::string& message) {
    const pr::Reply r = pr::make_reply(status, latency, latency_postfilter, message);
    return to_bytes(&r, sizeof(r));
}

py::tuple py_parse_reply(const py::bytes& data) {
    const std::string_view view = data;
    if (view.size() != sizeof(pr::Reply)) raise_value("data", "reply is " + std::to_string(view.size()) + " bytes");
    pr::Reply r{};
    std::memcpy(&r, view.data(), sizeof(r));
    if (r.magic != pr::kMagic) raise_value("data", "reply has a bad magic");
    r.message[sizeof(r.message) - 1] = '\0';
    return py::make_tuple(r.version, r.status, r.latency_samples, r.latency_postfilter_samples,
                          std::string(r.message));
}

}  // namespace

void register_protocol(py::module_& m) {
    m.attr("PROTOCOL_MAGIC") = pr::kMagic;
    m.attr("PROTOCOL_VERSION") = pr::kVersion;
    m.attr("PROTOCOL_HELLO_BYTES") = sizeof(pr::Hello);
    m.attr("PROTOCOL_REPLY_BYTES") = sizeof(pr::Reply);
    m.attr("PROTOCOL_STATUS_OK") = pr::kStatusOk;
    m.attr("PROTOCOL_STATUS_VERSION") = pr::kStatusVersion;
    m.attr("PROTOCOL_STATUS_MALFORMED") = pr::kStatusMalformed;
    m.attr("PROTOCOL_STATUS_BAD_SHM") = pr::kStatusBadShm;
    m.attr("PROTOCOL_STATUS_BACKEND") = pr::kStatusBackend;
    m.def("protocol_check_hello", &py_check_hello, py::arg("data"),
          "Validate a plugin Hello: (status, message, fields dict or None).");
    m.def("protocol_make_hello", &py_make_hello, py::arg("channels"), py::arg("sample_rate"),
          py::arg("chunk_frames"), py::arg("slots"), py::arg("max_block") = 0, py::arg("pid") = 0,
          py::arg("client") = "", py::arg("version") = pr::kVersion,
          "A Hello message as the plugin sends it (version overridable for tests).");
    m.def("protocol_make_reply", &py_make_reply, py::arg("status"), py::arg("latency_samples"),
          py::arg("latency_postfilter_samples"), py::arg("message"),
          "A Reply message as the backend sends it: the stream latency of the codec path and of "
          "the postfilter path.");
    m.def("protocol_parse_reply", &py_parse_reply, py::arg("data"),
          "(version, status, latency_samples, latency_postfilter_samples, message) of a Reply.");
    py::class_<Channel>(m, "ProtocolChannel",
                        "One plugin instance's shared-memory region: input and output chunk rings.")
        .def(py::init<int, const py::bytes&>(), py::arg("fd"), py::arg("hello"),
             "Map the memfd `fd` described by the Hello bytes (backend side; fd stays the caller's). "
             "Raises ValueError unless it is sealed against shrinking (F_SEAL_SHRINK) and of the "
             "Hello's size.")
        .def_static("create", &Channel::create, py::arg("channels"), py::arg("sample_rate"),
                    py::arg("chunk_frames"), py::arg("slots"), py::return_value_policy::take_ownership,
                    "A fresh region in a new sealed memfd (client side, for tests and benchmarks).")
        .def_property_readonly("fd", &Channel::fd)
        .def_property_readonly("channels", &Channel::channels)
        .def_property_readonly("chunk_frames", &Channel::chunk_frames)
        .def_property_readonly("slots", &Channel::slots)
        .def_property_readonly("sample_rate", &Channel::sample_rate)
        .def("pop_input", &Channel::pop_input, py::arg("out"))
        .def("push_output", &Channel::push_output, py::arg("index"), py::arg("epoch"), py::arg("block"),
             py::arg("status") = 0, py::arg("elapsed_ns") = 0)
        .def("skip_input", &Channel::skip_input)
        .def("push_input", &Channel::push_input, py::arg("index"), py::arg("epoch"), py::arg("block"),
             py::arg("bitrate") = 6.0f, py::arg("nfe") = 6, py::arg("postfilter") = true, py::arg("seed") = 0)
        .def("pop_output", &Channel::pop_output, py::arg("out"))
        .def_property_readonly("queued_input", &Channel::queued_input)
        .def_property_readonly("queued_output", &Channel::queued_output)
        .def("stats", &Channel::stats)
        .def("close", &Channel::close, "Unmap (and close the fd when this channel created it).");
}

}  // namespace flowdec
