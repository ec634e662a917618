#include "PluginProcessor.h"

#include <poll.h>
#include <unistd.h>

#include <algorithm>
#include <chrono>
#include <cstdio>
#include <cstdlib>
#include <fstream>
#include <thread>

namespace flowdec {

namespace {

int envInt(const char* name, int fallback) {
    const char* v = std::getenv(name);
    return (v && *v) ? std::atoi(v) : fallback;
}

juce::AudioProcessorValueTreeState::ParameterLayout makeLayout() {
    using namespace juce;
    AudioProcessorValueTreeState::ParameterLayout l;
    l.add(std::make_unique<AudioParameterFloat>(ParameterID{"bitrate", 1}, "Bitrate",
                                                NormalisableRange<float>(3.0f, 7.5f, 1.5f), 6.0f));  // kbit/s
    l.add(std::make_unique<AudioParameterInt>(ParameterID{"nfe", 1}, "NFE", 1, 32, 6));
    l.add(std::make_unique<AudioParameterBool>(ParameterID{"postfilter", 1}, "Postfilter", true));
    l.add(std::make_unique<AudioParameterFloat>(ParameterID{"mix", 1}, "Dry Wet",
                                                NormalisableRange<float>(0.0f, 1.0f, 0.01f), 1.0f));
    l.add(std::make_unique<AudioParameterInt>(ParameterID{"seed", 1}, "Seed", 0, 1023, 0));
    l.add(std::make_unique<AudioParameterChoice>(ParameterID{"fallback", 1}, "Fallback",
                                                 StringArray{"dry", "silence"}, 0));
    l.add(std::make_unique<AudioParameterBool>(ParameterID{"force_realtime", 1}, "Force Realtime", false));
    return l;
}

}  // namespace

FlowdecProcessor::FlowdecProcessor()
    : AudioProcessor(BusesProperties()
                         .withInput("Input", juce::AudioChannelSet::stereo(), true)
                         .withOutput("Output", juce::AudioChannelSet::stereo(), true)),
      params(*this, nullptr, "flowdec", makeLayout()) {
    pBitrate = params.getRawParameterValue("bitrate");
    pNfe = params.getRawParameterValue("nfe");
    pPostfilter = params.getRawParameterValue("postfilter");
    pMix = params.getRawParameterValue("mix");
    pSeed = params.getRawParameterValue("seed");
    pFallback = params.getRawParameterValue("fallback");
    pRealtime = params.getRawParameterValue("force_realtime");
    auto under = std::make_unique<ReadOnlyCounter>("underruns", "Underruns", 1000000.0f);
    auto conn = std::make_unique<ReadOnlyCounter>("connected", "Connected", 1.0f);
    auto lat = std::make_unique<ReadOnlyCounter>("latency", "Latency Samples", 10000000.0f);
    latencyParam = lat.get();
    underrunParam = under.get();
    connectedParam = conn.get();
    addParameter(under.release());
    addParameter(conn.release());
    addParameter(lat.release());
    envRealtime = envInt("FLOWDEC_FORCE_REALTIME", 0) != 0;
    offlineTimeoutMs = envInt("FLOWDEC_OFFLINE_TIMEOUT_MS", 10000);
    if (std::getenv("FLOWDEC_PLUGIN_TIMING")) {
        timings.resize(1 << 18);
        timingBlocks.resize(1 << 18);
    }
    startTimerHz(kMeterHz);
}

void FlowdecProcessor::timerCallback() {
    underrunParam->publish();
    connectedParam->publish();
    latencyParam->publish();
}

FlowdecProcessor::~FlowdecProcessor() {
    {
        // Holding the message manager lock means no timer callback is running (re-entrant:
        // JUCE's VST3 wrapper may hold it already while it deletes the processor).
        const juce::MessageManagerLock mml;
        stopTimer();
    }
    link.stop();
    dumpTimings();
}

bool FlowdecProcessor::isBusesLayoutSupported(const BusesLayout& layouts) const {
    const auto in = layouts.getMainInputChannelSet();
    const auto out = layouts.getMainOutputChannelSet();
    return in == out && (out == juce::AudioChannelSet::mono() || out == juce::AudioChannelSet::stereo());
}

void FlowdecProcessor::prepareToPlay(double sampleRate, int maxBlock) {
    const int ch = std::max(1, getTotalNumOutputChannels());
    maxBlock = std::max(1, maxBlock);
    // pedalboard calls prepareToPlay again mid-stream: keep everything when nothing changed.
    if (shm.region.mapped() && sampleRate == rate && ch == channels) {
        if (maxBlock <= blockAllowance) return;
        const int margin = static_cast<int>(std::lround(sampleRate * std::max(0, envInt("FLOWDEC_MARGIN_MS", 30)) / 1000.0));
        if (chunk + maxBlock + margin <= bufferLatency) {  // larger blocks fit the latency
            growBlock(maxBlock);
            return;
        }
    }

    link.stop();
    rate = sampleRate;
    channels = ch;
    blockAllowance = std::max(maxBlock, envInt("FLOWDEC_MIN_BLOCK", 0));
    const int chunkMs = std::max(5, envInt("FLOWDEC_CHUNK_MS", 40));
    chunk = static_cast<int>(std::lround(sampleRate * chunkMs / 1000.0));
    const int marginMs = std::max(0, envInt("FLOWDEC_MARGIN_MS", 30));
    const int margin = static_cast<int>(std::lround(sampleRate * marginMs / 1000.0));
    const int need = chunk + blockAllowance + margin;
    // A latency floor in samples, independent of rate and block size: pedalboard reads the
    // latency right after prepareToPlay while JUCE's VST3 wrapper reports changes
    // asynchronously, so a latency that does not move between preparations keeps the first
    // render after a rate change exact. The backend's share is subtracted below.
    const int floor = std::max(0, envInt("FLOWDEC_LATENCY_FLOOR", 32768));
    bufferLatency = std::max(need, floor);
    const int slots = std::max(8, 2 * (bufferLatency / chunk + 2));

    std::string error;
    const protocol::Layout layout{static_cast<std::uint32_t>(channels), static_cast<std::uint32_t>(chunk),
                                  static_cast<std::uint32_t>(slots)};
    if (!shm.create(layout, static_cast<std::uint32_t>(std::lround(sampleRate)), &error))
        std::fprintf(stderr, "flowdec plugin: %s\n", error.c_str());

    BackendLink::Config cfg;
    cfg.socketPath = backendSocketPath();
    cfg.command = defaultBackendCommand();  // never from the saved state: a project file is data
    cfg.maxBlock = static_cast<std::uint32_t>(blockAllowance);
    cfg.tick = [this] { connectedParam->set(link.connected() ? 1.0f : 0.0f); };
    if (shm.region.mapped()) link.start(&shm, cfg);
    // Offline renders must be exact from the first sample: wait for the backend here.
    const bool realtime = (pRealtime->load() > 0.5f) || envRealtime || !isNonRealtime();
    const int waitMs = envInt("FLOWDEC_CONNECT_TIMEOUT_MS", realtime ? 200 : 30000);
    if (shm.region.mapped()) link.waitConnected(waitMs);
    // Reported by the backend or restored from a project file: data, kept within 10 s so that
    // no buffer size below can overflow.
    const int s = std::clamp(link.everConnected() ? static_cast<int>(link.latency())
                                                  : static_cast<int>(params.state.getProperty("backend_latency", 0)),
                             0, 10 * static_cast<int>(std::lround(sampleRate)));
    backendLatency = s;
    bufferLatency = std::max(need, floor - s);  // D: total = max(need + s, floor)
    if (link.everConnected()) params.state.setProperty("backend_latency", s, nullptr);

    // Dry delay line with one second of headroom for a backend that reports another latency.
    dryCap = bufferLatency + s + blockAllowance + static_cast<int>(sampleRate) + 1;
    dryLine.assign(static_cast<std::size_t>(channels) * dryCap, 0.0f);
    acc.assign(static_cast<std::size_t>(channels) * chunk, 0.0f);
    scratchIn.assign(static_cast<std::size_t>(channels) * blockAllowance, 0.0f);
    scratchOut.assign(static_cast<std::size_t>(channels) * blockAllowance, 0.0f);
    const int latency = bufferLatency + s;
    if (envInt("FLOWDEC_VERBOSE", 0))
        std::fprintf(stderr, "flowdec plugin: prepared %d Hz, %d ch, blocks <= %d: latency %d (buffer %d + backend %d)\n",
                     static_cast<int>(sampleRate), channels, blockAllowance, latency, bufferLatency, s);
    setLatencySamples(latency);  // JUCE's VST3 wrapper tells the host asynchronously
    latencyParam->set(static_cast<float>(latency));
    reset();
}

// Larger host blocks within the current latency: reallocate the per-block buffers and the
// dry line (keeping its content), leave the stream, connection and counters alone.
void FlowdecProcessor::growBlock(int maxBlock) {
    blockAllowance = maxBlock;
    scratchIn.assign(static_cast<std::size_t>(channels) * blockAllowance, 0.0f);
    scratchOut.assign(static_cast<std::size_t>(channels) * blockAllowance, 0.0f);
    const int newCap = bufferLatency + backendLatency.load() + blockAllowance + static_cast<int>(rate) + 1;
    if (newCap <= dryCap) return;
    std::vector<float> line(static_cast<std::size_t>(channels) * newCap, 0.0f);
    for (int c = 0; c < channels; ++c)
        for (std::int64_t k = 1; k <= std::min<std::int64_t>(dryCap, dryWrite); ++k)
            line[static_cast<std::size_t>(c) * newCap + static_cast<std::size_t>((dryWrite - k) % newCap)] =
                dryLine[static_cast<std::size_t>(c) * dryCap + static_cast<std::size_t>((dryWrite - k) % dryCap)];
    dryLine.swap(line);
    dryCap = newCap;
}

void FlowdecProcessor::reset() {
    if (curOk) releaseChunk();
    curIndex = UINT64_MAX;
    curOk = false;
    ++epoch;
    baseIndex = nextIndex;
    accPos = 0;
    outPos = 0;
    dryWrite = 0;
    offlineStalled = false;
    std::fill(dryLine.begin(), dryLine.end(), 0.0f);
    std::fill(acc.begin(), acc.end(), 0.0f);
}

void FlowdecProcessor::pushInputChunk() {
    const std::uint64_t index = nextIndex++;
    const protocol::RingRef ring = protocol::input_ring(shm.region);
    const std::uint64_t pos = ring.writable();
    if (pos == UINT64_MAX) {
        shm.region.control()->dropped.fetch_add(1, std::memory_order_relaxed);
        return;
    }
    protocol::SlotHeader* s = shm.region.in_slot(pos);
    s->index = index;
    s->epoch = epoch;
    s->bitrate = pBitrate->load();
    s->nfe = static_cast<std::uint32_t>(pNfe->load());
    s->flags = pPostfilter->load() > 0.5f ? protocol::kFlagPostfilter : 0u;
    s->seed = static_cast<std::uint64_t>(pSeed->load());
    s->status = 0;
    std::memcpy(protocol::Region::samples(s), acc.data(), acc.size() * sizeof(float));
    ring.commit_write(pos);
}

// Find output chunk `index` in the output ring (discarding older ones). In offline use,
// wait for it with a time limit. Sets curOk/curPos.
bool FlowdecProcessor::resolveChunk(std::uint64_t index, bool realtime) {
    curIndex = index;
    curOk = false;
    const protocol::RingRef ring = protocol::output_ring(shm.region);
    const bool mayWait = !realtime && link.connected();
    const auto deadline = std::chrono::steady_clock::now() +
                          std::chrono::milliseconds(offlineStalled ? 100 : offlineTimeoutMs);
    for (;;) {
        const std::uint64_t pos = ring.readable();
        if (pos != UINT64_MAX) {
            protocol::SlotHeader* s = shm.region.out_slot(pos);
            if (s->index < index) {  // stale (late, or from before a reset)
                ring.commit_read(pos);
                continue;
            }
            if (s->index == index && s->status == 0) {
                curOk = true;
                curPos = pos;
                offlineStalled = false;
                return true;
            }
            if (s->index == index) {  // the backend failed this chunk
                ring.commit_read(pos);
                return false;
            }
            return false;  // a newer chunk: ours was skipped
        }
        if (!mayWait || !link.connected()) return false;
        const auto now = std::chrono::steady_clock::now();
        if (now >= deadline) {
            offlineStalled = true;
            return false;
        }
        const int ms = static_cast<int>(std::chrono::duration_cast<std::chrono::milliseconds>(deadline - now).count());
        pollfd p{shm.outEvent, POLLIN, 0};
        if (poll(&p, 1, std::min(ms + 1, 50)) > 0) {
            std::uint64_t v;
            (void)!read(shm.outEvent, &v, sizeof(v));
        }
    }
}

void FlowdecProcessor::releaseChunk() {
    if (curOk) protocol::output_ring(shm.region).commit_read(curPos);
    curOk = false;
}

void FlowdecProcessor::processChunked(const float* const* in, float* const* out, int n, bool realtime) {
    const int C = channels;
    // 1. Input: gather chunks, queue each complete one (never blocks; a full ring drops it).
    bool queued = false;
    for (int i = 0; i < n;) {
        const int m = std::min(n - i, chunk - accPos);
        for (int c = 0; c < C; ++c)
            std::memcpy(&acc[static_cast<std::size_t>(c) * chunk + accPos], in[c] + i, m * sizeof(float));
        accPos += m;
        i += m;
        if (accPos == chunk) {
            pushInputChunk();
            accPos = 0;
            queued = true;
        }
    }
    if (queued) {
        const std::uint64_t one = 1;
        (void)!write(shm.inEvent, &one, sizeof(one));
    }
    // 2. Dry signal delayed by the reported latency.
    const int dryDelay = bufferLatency + backendLatency.load(std::memory_order_relaxed);
    const bool silence = pFallback->load() > 0.5f;
    const float mix = pMix->load();
    for (int i = 0; i < n; ++i) {
        const std::int64_t w = (dryWrite + i) % dryCap;
        const std::int64_t r = ((dryWrite + i - dryDelay) % dryCap + dryCap) % dryCap;
        for (int c = 0; c < C; ++c) {
            float* line = &dryLine[static_cast<std::size_t>(c) * dryCap];
            line[w] = in[c][i];
            out[c][i] = line[r];  // dry, delayed
        }
    }
    dryWrite += n;
    // 3. Wet: backend output chunk j plays bufferLatency samples after it was gathered.
    for (int i = 0; i < n;) {
        const std::int64_t q = outPos - bufferLatency;
        if (q < 0) {  // nothing processed yet: the stream's leading silence
            const int m = static_cast<int>(std::min<std::int64_t>(n - i, -q));
            for (int c = 0; c < C; ++c)
                for (int k = 0; k < m; ++k) out[c][i + k] *= (1.0f - mix);
            i += m;
            outPos += m;
            continue;
        }
        const std::uint64_t j = baseIndex + static_cast<std::uint64_t>(q / chunk);
        const int off = static_cast<int>(q % chunk);
        const int m = std::min(n - i, chunk - off);
        if (j != curIndex) {
            releaseChunk();
            if (!resolveChunk(j, realtime)) {
                ++underruns;
                shm.region.control()->underruns.fetch_add(1, std::memory_order_relaxed);
            }
        }
        if (curOk) {
            const float* wet = protocol::Region::samples(shm.region.out_slot(curPos));
            for (int c = 0; c < C; ++c) {
                const float* w = wet + static_cast<std::size_t>(c) * chunk + off;
                for (int k = 0; k < m; ++k) out[c][i + k] = mix * w[k] + (1.0f - mix) * out[c][i + k];
            }
        } else if (silence) {
            for (int c = 0; c < C; ++c)
                for (int k = 0; k < m; ++k) out[c][i + k] *= (1.0f - mix);
        }  // else: dry stays
        i += m;
        outPos += m;
        if (off + m == chunk) {
            releaseChunk();
            curIndex = UINT64_MAX;
        }
    }
}

void FlowdecProcessor::processBlock(juce::AudioBuffer<float>& buffer, juce::MidiBuffer&) {
    juce::ScopedNoDenormals noDenormals;
    const auto t0 = std::chrono::steady_clock::now();
    const int n = buffer.getNumSamples();
    if (!shm.region.mapped() || channels == 0) return;
    const bool realtime = (pRealtime->load() > 0.5f) || envRealtime || !isNonRealtime();
    const int C = std::min(channels, buffer.getNumChannels());
    // Fewer host channels than prepared: repeat the last input, render the rest to scratch.
    float* outs[protocol::kMaxChannels];
    const float* ins[protocol::kMaxChannels];
    for (int i = 0; i < n;) {
        const int m = std::min(n - i, blockAllowance);
        for (int c = 0; c < channels; ++c) {
            float* s = &scratchIn[static_cast<std::size_t>(c) * blockAllowance];
            std::memcpy(s, buffer.getReadPointer(std::min(c, C - 1)) + i, m * sizeof(float));
            ins[c] = s;
            outs[c] = c < C ? buffer.getWritePointer(c) + i
                            : &scratchOut[static_cast<std::size_t>(c) * blockAllowance];
        }
        processChunked(ins, outs, m, realtime);
        i += m;
    }
    underrunParam->set(static_cast<float>(underruns));
    connectedParam->set(link.connected() ? 1.0f : 0.0f);
    if (timingCount < timings.size()) {
        const auto dt = std::chrono::steady_clock::now() - t0;
        timings[timingCount] = std::chrono::duration<float, std::micro>(dt).count();
        timingBlocks[timingCount] = n;
        ++timingCount;
    }
}

void FlowdecProcessor::dumpTimings() {
    const char* path = std::getenv("FLOWDEC_PLUGIN_TIMING");
    if (!path || timingCount == 0) return;
    const std::string file = std::string(path) + "." + std::to_string(getpid()) + "." +
                             std::to_string(reinterpret_cast<std::uintptr_t>(this)) + ".txt";
    std::ofstream f(file);
    for (std::size_t i = 0; i < timingCount; ++i) f << timingBlocks[i] << ' ' << timings[i] << '\n';
}

void FlowdecProcessor::getStateInformation(juce::MemoryBlock& dest) {
    auto state = params.copyState();
    if (auto xml = state.createXml()) copyXmlToBinary(*xml, dest);
}

void FlowdecProcessor::setStateInformation(const void* data, int size) {
    if (auto xml = getXmlFromBinary(data, size))
        if (xml->hasTagName(params.state.getType())) params.replaceState(juce::ValueTree::fromXml(*xml));
}

}  // namespace flowdec

juce::AudioProcessor* JUCE_CALLTYPE createPluginFilter() { return new flowdec::FlowdecProcessor(); }
