#include "PluginProcessor.h"

#include <poll.h>
#include <unistd.h>

#include <algorithm>
#include <chrono>
#include <cstdio>
#include <cstdlib>
#include <fstream>
#include <thread>

#include "PluginEditor.h"

JUCE_BEGIN_IGNORE_WARNINGS_GCC_LIKE("-Wshadow", "-Wnon-virtual-dtor", "-Wzero-as-null-pointer-constant",
                                    "-Wsign-conversion", "-Wextra-semi", "-Wpedantic")
#include <pluginterfaces/vst/ivsteditcontroller.h>
JUCE_END_IGNORE_WARNINGS_GCC_LIKE

namespace flowdec {

namespace {

// Debugging and test knobs only; everything a user sets is a parameter.
int envInt(const char* name, int fallback) {
    const char* v = std::getenv(name);
    return (v && *v) ? std::atoi(v) : fallback;
}

constexpr int kMaxBackendLatencySeconds = 10;  // a backend's (or a saved state's) S is bounded

juce::AudioProcessorValueTreeState::ParameterLayout makeLayout() {
    using namespace juce;
    AudioProcessorValueTreeState::ParameterLayout l;
    const float step = static_cast<float>(FLOWDEC_BITRATE_NEXT - FLOWDEC_BITRATE_MIN);
    l.add(std::make_unique<AudioParameterFloat>(
        ParameterID{"bitrate", 1}, "Bitrate",
        NormalisableRange<float>(static_cast<float>(FLOWDEC_BITRATE_MIN), static_cast<float>(FLOWDEC_BITRATE_MAX), step),
        static_cast<float>(FLOWDEC_DEFAULT_BITRATE)));  // kbit/s
    l.add(std::make_unique<AudioParameterInt>(ParameterID{"nfe", 1}, "NFE", 1, 32, FLOWDEC_DEFAULT_NFE));
    l.add(std::make_unique<AudioParameterBool>(ParameterID{"postfilter", 1}, "Postfilter",
                                               FLOWDEC_DEFAULT_POSTFILTER != 0));
    l.add(std::make_unique<AudioParameterFloat>(ParameterID{"mix", 1}, "Dry Wet",
                                                NormalisableRange<float>(0.0f, 1.0f, 0.01f), 1.0f));
    l.add(std::make_unique<AudioParameterInt>(ParameterID{"seed", 1}, "Seed", 0, 1023, 0));
    l.add(std::make_unique<AudioParameterChoice>(ParameterID{"fallback", 1}, "Fallback",
                                                 StringArray{"dry", "silence"}, 0));
    l.add(std::make_unique<AudioParameterBool>(ParameterID{"force_realtime", 1}, "Force Realtime", false));
    StringArray chunks;
    for (int ms : kChunkChoicesMs) chunks.add(String(ms));
    l.add(std::make_unique<AudioParameterChoice>(ParameterID{"chunk_ms", 1}, "Chunk Ms", chunks,
                                                 kDefaultChunkChoice));
    l.add(std::make_unique<AudioParameterInt>(ParameterID{"margin_ms", 1}, "Margin Ms", 0, 500, kDefaultMarginMs));
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
    pChunk = params.getRawParameterValue("chunk_ms");
    pMargin = params.getRawParameterValue("margin_ms");
    auto under = std::make_unique<ReadOnlyCounter>("underruns", "Underruns", 1000000.0f);
    auto conn = std::make_unique<ReadOnlyCounter>("connected", "Connected", 1.0f);
    auto status = std::make_unique<ReadOnlyCounter>("backend_status", "Backend Status", 2.0f,
                                                    juce::StringArray{"starting", "connected", "failed"});
    auto lat = std::make_unique<ReadOnlyCounter>("latency", "Latency Samples", 10000000.0f);
    latencyParam = lat.get();
    underrunParam = under.get();
    connectedParam = conn.get();
    statusParam = status.get();
    addParameter(under.release());
    addParameter(conn.release());
    addParameter(lat.release());
    addParameter(status.release());
    envRealtime = envInt("FLOWDEC_FORCE_REALTIME", 0) != 0;
    offlineTimeoutMs = envInt("FLOWDEC_OFFLINE_TIMEOUT_MS", 10000);
    connectTimeoutMs = envInt("FLOWDEC_CONNECT_TIMEOUT_MS", -1);
    if (std::getenv("FLOWDEC_PLUGIN_TIMING")) {
        timings.resize(1 << 18);
        timingBlocks.resize(1 << 18);
    }
    startTimerHz(kMeterHz);
}

juce::AudioProcessorEditor* FlowdecProcessor::createEditor() { return new FlowdecEditor(*this); }

void FlowdecProcessor::setIComponentHandler(Steinberg::FUnknown* handler) {
    if (handler != nullptr) handler->addRef();
    if (auto* old = componentHandler.exchange(handler)) old->release();
}

BackendStatus FlowdecProcessor::backendStatus() const {
    if (link.connected()) return kStatusConnected;
    return link.gaveUp() ? kStatusFailed : kStatusStarting;
}

juce::String FlowdecProcessor::statusMessage() const {
    switch (backendStatus()) {
        case kStatusConnected:
            return "Connected to the flowdec backend; latency " + juce::String(getLatencySamples()) + " samples.";
        case kStatusFailed:
            return "The flowdec backend cannot start: " + juce::String(link.lastError()) +
                   "\nFix: install flowdec for the python3 on the host's PATH (pip install flowdec), or start "
                   "the host with FLOWDEC_BACKEND_CMD set to a working command (e.g. \"/path/to/venv/bin/python "
                   "-I -m flowdec serve\").\nBackend log: " + juce::String(backendLogPath()) +
                   "\nUntil then real-time playback is dry (or silent) and offline renders are silent.";
        case kStatusStarting:
            break;
    }
    const juce::String err(link.lastError());
    return "Starting the flowdec backend..." + (err.isEmpty() ? juce::String() : " (" + err + ")");
}

void FlowdecProcessor::timerCallback() {
    const bool connected = link.connected();
    connectedParam->set(connected ? 1.0f : 0.0f);
    statusParam->set(static_cast<float>(backendStatus()));
    underrunParam->set(static_cast<float>(underrunsShown.load(std::memory_order_relaxed)));
    // The latency changed after prepareToPlay (the backend connected late with its own, or
    // the postfilter was switched): tell the host (JUCE's VST3 wrapper asks it to restart;
    // it re-reads the latency).
    const int want = wantedLatency.load();
    if (want > 0 && want != getLatencySamples()) setLatencySamples(want);
    latencyParam->set(static_cast<float>(getLatencySamples()));
    const std::uint64_t learnt = stateLatencies.exchange(kNoLatencies);
    if (learnt != kNoLatencies) {
        const std::lock_guard<std::mutex> lock(rememberMutex);
        rememberedCodecLatency = static_cast<int>(learnt & 0xffffffffu);
        rememberedPostfilterLatency = static_cast<int>(learnt >> 32);
        rememberedKey = preparedKey;
    }
    underrunParam->publish();
    connectedParam->publish();
    statusParam->publish();
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
    if (auto* handler = componentHandler.exchange(nullptr)) handler->release();
}

bool FlowdecProcessor::isBusesLayoutSupported(const BusesLayout& layouts) const {
    const auto in = layouts.getMainInputChannelSet();
    const auto out = layouts.getMainOutputChannelSet();
    return in == out && (out == juce::AudioChannelSet::mono() || out == juce::AudioChannelSet::stereo());
}

int FlowdecProcessor::chunkSamples(double sampleRate) const {
    const int i = std::clamp(static_cast<int>(pChunk->load()), 0, static_cast<int>(std::size(kChunkChoicesMs)) - 1);
    return static_cast<int>(std::lround(sampleRate * kChunkChoicesMs[i] / 1000.0));
}

int FlowdecProcessor::marginSamples(double sampleRate) const {
    return static_cast<int>(std::lround(sampleRate * std::max(0.0f, pMargin->load()) / 1000.0));
}

void FlowdecProcessor::prepareToPlay(double sampleRate, int maxBlock) {
    const int ch = std::max(1, getTotalNumOutputChannels());
    maxBlock = std::max(1, maxBlock);
    const int newChunk = chunkSamples(sampleRate);
    const int newMargin = marginSamples(sampleRate);
    // pedalboard calls prepareToPlay again mid-stream: keep everything when nothing changed.
    if (shm.region.mapped() && sampleRate == rate && ch == channels && newChunk == chunk && newMargin == margin) {
        // Offline, a chunk is complete before the block that plays it whatever the block
        // size, and processBlock works in pieces of the prepared size: larger blocks keep
        // the stream and its latency. In real time they need a longer latency.
        if (maxBlock <= blockAllowance || isNonRealtime()) {
            // The postfilter may have been switched since the last block (pedalboard sets it
            // before a render): the host reads that path's latency before the first block.
            if (followPostfilter()) reportLatencyNow();
            return;
        }
    }

    link.stop();
    rate = sampleRate;
    channels = ch;
    chunk = newChunk;
    margin = newMargin;
    blockAllowance = maxBlock;
    bufferLatency = chunk + blockAllowance + margin;  // D
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
    if (shm.region.mapped()) link.start(&shm, cfg);
    // S, the backend's stream latency of the path in use, must be right from the first block:
    // the backend tells both paths' in its handshake, so wait for it here (a cold start loads
    // the model). A project saved with this rate, chunk and channel count remembers both:
    // then a real-time host waits only briefly (a late connection re-reports the latency,
    // see adoptBackendLatency).
    const int maxS = kMaxBackendLatencySeconds * static_cast<int>(std::lround(sampleRate));
    bool remembered = false;
    PathLatencies rememberedS;
    {
        const std::lock_guard<std::mutex> lock(rememberMutex);
        preparedKey = juce::String(static_cast<int>(sampleRate)) + "/" + juce::String(chunk) + "/" + juce::String(channels);
        remembered = rememberedCodecLatency >= 0 && rememberedPostfilterLatency >= 0 && rememberedKey == preparedKey;
        rememberedS = {static_cast<std::uint32_t>(std::clamp(rememberedCodecLatency, 0, maxS)),
                       static_cast<std::uint32_t>(std::clamp(rememberedPostfilterLatency, 0, maxS))};
    }
    const bool realtime = (pRealtime->load() > 0.5f) || envRealtime || !isNonRealtime();
    const int waitMs = connectTimeoutMs >= 0 ? connectTimeoutMs : (remembered && realtime ? 200 : 30000);
    if (shm.region.mapped()) link.waitConnected(waitMs);
    seenConnections = link.connections();
    const PathLatencies known = link.connected() ? link.latencies() : remembered ? rememberedS : PathLatencies{};
    codecLatency = std::clamp(static_cast<int>(std::min<std::uint32_t>(known.codec, INT32_MAX)), 0, maxS);
    postfilterLatency = std::clamp(static_cast<int>(std::min<std::uint32_t>(known.postfilter, INT32_MAX)), 0, maxS);
    if (link.connected())
        stateLatencies = static_cast<std::uint64_t>(codecLatency) | static_cast<std::uint64_t>(postfilterLatency) << 32;
    // The path the host's `postfilter` parameter asks for now (set before a render).
    postfilterPath = pPostfilter->load() > 0.5f;
    const int s = pathLatency(postfilterPath);
    backendLatency = s;

    // Dry delay line long enough for any S a backend may report later.
    dryCap = bufferLatency + maxS + 1;
    dryLine.assign(static_cast<std::size_t>(channels) * dryCap, 0.0f);
    acc.assign(static_cast<std::size_t>(channels) * chunk, 0.0f);
    scratchIn.assign(static_cast<std::size_t>(channels) * blockAllowance, 0.0f);
    scratchOut.assign(static_cast<std::size_t>(channels) * blockAllowance, 0.0f);
    const int latency = bufferLatency + s;
    if (envInt("FLOWDEC_VERBOSE", 0))
        std::fprintf(stderr, "flowdec plugin: prepared %d Hz, %d ch, blocks <= %d: latency %d (buffer %d + backend %d, %s path%s)\n",
                     static_cast<int>(sampleRate), channels, blockAllowance, latency, bufferLatency, s,
                     postfilterPath ? "postfilter" : "codec",
                     link.connected() ? "" : remembered ? ", remembered" : ", not connected yet");
    wantedLatency = latency;
    reportLatencyNow();
    reset();
}

// Tell the host the latency in use (wantedLatency) from prepareToPlay. JUCE's VST3 wrapper
// tells the host through its own message thread, later; a host that reads the latency right
// after activating the plugin (pedalboard, which pumps no message loop) would render this
// first block with the previous latency. So tell the host now, on the thread that activates
// the plugin (as the VST3 rules ask: the host's).
void FlowdecProcessor::reportLatencyNow() {
    const int latency = wantedLatency.load();
    const bool changed = latency != getLatencySamples();
    setLatencySamples(latency);
    if (changed)
        if (auto* handler = static_cast<Steinberg::Vst::IComponentHandler*>(componentHandler.load()))
            handler->restartComponent(Steinberg::Vst::kLatencyChanged);
    latencyParam->set(static_cast<float>(latency));
}

// The backend (re)connected with stream latencies other than the ones prepared (it was not
// running yet, or a new one runs another model): take the new S, restart the stream at the
// next chunk and ask the host to re-read the latency (the timer reports it).
void FlowdecProcessor::adoptBackendLatency() {
    seenConnections = link.connections();
    const int maxS = kMaxBackendLatencySeconds * static_cast<int>(std::lround(rate));
    const PathLatencies got = link.latencies();
    codecLatency = std::clamp(static_cast<int>(std::min<std::uint32_t>(got.codec, INT32_MAX)), 0, maxS);
    postfilterLatency = std::clamp(static_cast<int>(std::min<std::uint32_t>(got.postfilter, INT32_MAX)), 0, maxS);
    stateLatencies = static_cast<std::uint64_t>(codecLatency) | static_cast<std::uint64_t>(postfilterLatency) << 32;
    const int s = pathLatency(postfilterPath);
    if (s == backendLatency.load()) return;
    backendLatency = s;
    wantedLatency = bufferLatency + s;
    reset();
}

// Follow the `postfilter` parameter: the stream runs one path, and the latency in use is that
// path's S. A switch to a path of another S restarts the stream (the dry line realigns) and
// asks the host to re-read the latency; true then. Audio thread, or prepareToPlay.
bool FlowdecProcessor::followPostfilter() {
    const bool post = pPostfilter->load() > 0.5f;
    if (post == postfilterPath) return false;
    postfilterPath = post;  // the chunks sent from now on carry it
    const int s = pathLatency(post);
    if (s == backendLatency.load()) return false;
    backendLatency = s;
    wantedLatency = bufferLatency + s;
    reset();
    return true;
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
    toldNoBackend = false;
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
    s->flags = postfilterPath ? protocol::kFlagPostfilter : 0u;
    s->seed = static_cast<std::uint64_t>(pSeed->load());
    s->status = 0;
    std::memcpy(protocol::Region::samples(s), acc.data(), acc.size() * sizeof(float));
    ring.commit_write(pos);
}

void FlowdecProcessor::releaseChunk() {
    if (curOk) protocol::output_ring(shm.region).commit_read(curPos);
    curOk = false;
}


// Find output chunk `index` in the output ring (discarding older ones). Offline, wait for it
// with a time limit, and for a backend that is still starting (not for one that cannot
// start). Sets curOk/curPos.
bool FlowdecProcessor::resolveChunk(std::uint64_t index, bool realtime) {
    curIndex = index;
    curOk = false;
    const protocol::RingRef ring = protocol::output_ring(shm.region);
    const auto limitMs = offlineStalled ? 100
                         : link.connected() ? offlineTimeoutMs
                                            : std::max(offlineTimeoutMs, connectTimeoutMs >= 0 ? connectTimeoutMs : 30000);
    const auto deadline = std::chrono::steady_clock::now() + std::chrono::milliseconds(limitMs);
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
        if (realtime || link.gaveUp()) return false;
        // A backend that connected after this chunk was sent never saw it: no use waiting.
        if (link.connections() != seenConnections) return false;
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
    // Offline without a backend, fail loudly: silence, never dry audio passing as coded.
    const bool silence = pFallback->load() > 0.5f || (!realtime && !link.connected());
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
    if (link.connected() && link.connections() != seenConnections) adoptBackendLatency();
    followPostfilter();
    if (!realtime && !link.connected() && link.gaveUp() && !toldNoBackend) {
        toldNoBackend = true;  // once per preparation: an offline render without the codec
        std::fprintf(stderr, "flowdec plugin: offline render WITHOUT the codec (silence): %s\n",
                     link.lastError().c_str());
    }
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
    underrunsShown.store(underruns, std::memory_order_relaxed);
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
    {
        const std::lock_guard<std::mutex> lock(rememberMutex);
        // (unchanged values stay as they are: a restored state saves back as it came)
        if (rememberedCodecLatency >= 0 && static_cast<int>(state.getProperty("backend_latency", -1)) != rememberedCodecLatency)
            state.setProperty("backend_latency", rememberedCodecLatency, nullptr);
        if (rememberedPostfilterLatency >= 0 &&
            static_cast<int>(state.getProperty("backend_latency_postfilter", -1)) != rememberedPostfilterLatency)
            state.setProperty("backend_latency_postfilter", rememberedPostfilterLatency, nullptr);
        if (rememberedKey.isNotEmpty() && state.getProperty("backend_latency_key").toString() != rememberedKey)
            state.setProperty("backend_latency_key", rememberedKey, nullptr);
    }
    if (auto xml = state.createXml()) copyXmlToBinary(*xml, dest);
}

void FlowdecProcessor::setStateInformation(const void* data, int size) {
    auto xml = getXmlFromBinary(data, size);
    if (!xml || !xml->hasTagName(params.state.getType())) return;
    {
        // Data from a project file: bounded where it is used (kMaxBackendLatencySeconds).
        const std::lock_guard<std::mutex> lock(rememberMutex);
        // Both paths' S, or nothing (a state of an older plugin kept one S, of the padded path).
        const bool both = xml->hasAttribute("backend_latency") && xml->hasAttribute("backend_latency_postfilter");
        rememberedCodecLatency = both ? std::max(0, xml->getIntAttribute("backend_latency")) : -1;
        rememberedPostfilterLatency = both ? std::max(0, xml->getIntAttribute("backend_latency_postfilter")) : -1;
        rememberedKey = xml->getStringAttribute("backend_latency_key");
    }
    params.replaceState(juce::ValueTree::fromXml(*xml));
}

}  // namespace flowdec

juce::AudioProcessor* JUCE_CALLTYPE createPluginFilter() { return new flowdec::FlowdecProcessor(); }
