// flowdec plugin: streams audio in fixed chunks to the shared flowdec backend and plays back
// its output `latency` samples later: the chunk, host block and margin, plus the backend's
// stream latency of the path in use (codec alone, or with the postfilter). processBlock never waits, allocates or locks in
// real-time use; when a chunk is late or the backend is absent it plays the dry signal
// delayed by the same latency (or silence) and counts an under-run. An offline render waits
// for the backend instead, and renders silence (never dry audio) when it has none.
#pragma once

#include <juce_audio_processors/juce_audio_processors.h>

#include <atomic>
#include <mutex>
#include <vector>

#include "BackendLink.h"

namespace flowdec {

// Parameter defaults from the shipped model's card (plugin/CMakeLists.txt reads it).
#ifndef FLOWDEC_DEFAULT_POSTFILTER
#define FLOWDEC_DEFAULT_POSTFILTER 0
#define FLOWDEC_DEFAULT_NFE 6
#define FLOWDEC_DEFAULT_BITRATE 6.0
#define FLOWDEC_BITRATE_MIN 3.0
#define FLOWDEC_BITRATE_MAX 7.5
#define FLOWDEC_BITRATE_NEXT 4.5
#endif

// Chunk lengths (ms) offered by the `chunk_ms` parameter; shorter chunks lower the latency
// and raise the backend's per-second overhead.
inline constexpr int kChunkChoicesMs[] = {10, 20, 40, 80, 160};
inline constexpr int kDefaultChunkChoice = 2;  // 40 ms
inline constexpr int kDefaultMarginMs = 30;

// Backend state as shown by the `backend_status` parameter.
enum BackendStatus { kStatusStarting = 0, kStatusConnected = 1, kStatusFailed = 2 };

// A read-only value shown to the host (under-runs, connection state, latency). With
// `names`, the value is an index into them (the host shows the name).
class ReadOnlyCounter : public juce::AudioProcessorParameterWithID {
public:
    ReadOnlyCounter(const juce::String& id, const juce::String& shownName, float maxValue,
                    juce::StringArray names = {})
        : AudioProcessorParameterWithID(juce::ParameterID{id, 1}, shownName), max_(maxValue),
          names_(std::move(names)) {}
    void set(float v) { value_.store(v, std::memory_order_relaxed); }
    float raw() const { return value_.load(std::memory_order_relaxed); }
    // Tell the host when the value moved since the last call (takes JUCE's listener lock;
    // call it on the message thread, never from processBlock).
    void publish() {
        const float v = getValue();
        if (published_.exchange(v) != v) sendValueChangedMessageToListeners(v);
    }
    float getValue() const override { return std::min(value_.load(std::memory_order_relaxed), max_) / max_; }
    void setValue(float) override {}
    float getDefaultValue() const override { return 0.0f; }
    juce::String getLabel() const override { return {}; }
    juce::String getText(float v, int) const override {
        const int i = juce::roundToInt(v * max_);
        return names_.isEmpty() ? juce::String(i) : names_[i];
    }
    float getValueForText(const juce::String& t) const override {
        const int i = names_.indexOf(t);
        return (i >= 0 ? static_cast<float>(i) : t.getFloatValue()) / max_;
    }
    bool isAutomatable() const override { return false; }
    bool isMetaParameter() const override { return true; }
    int getNumSteps() const override { return static_cast<int>(max_) + 1; }
    bool isDiscrete() const override { return true; }
    juce::StringArray getAllValueStrings() const override { return names_; }

private:
    float max_;
    juce::StringArray names_;
    std::atomic<float> value_{0.0f};
    std::atomic<float> published_{0.0f};
};

class FlowdecProcessor : public juce::AudioProcessor, public juce::VST3ClientExtensions, private juce::Timer {
public:
    // The VST3 host's IComponentHandler (JUCE's wrapper passes it; null elsewhere), held with
    // a reference so that it outlives a host that replaces it.
    void setIComponentHandler(Steinberg::FUnknown* handler) override;

    FlowdecProcessor();
    ~FlowdecProcessor() override;

    void prepareToPlay(double sampleRate, int maximumExpectedSamplesPerBlock) override;
    void releaseResources() override {}
    void reset() override;
    bool isBusesLayoutSupported(const BusesLayout& layouts) const override;
    void processBlock(juce::AudioBuffer<float>&, juce::MidiBuffer&) override;

    juce::AudioProcessorEditor* createEditor() override;
    bool hasEditor() const override { return true; }
    const juce::String getName() const override { return "Flowdec"; }
    bool acceptsMidi() const override { return false; }
    bool producesMidi() const override { return false; }
    double getTailLengthSeconds() const override { return 0.0; }
    int getNumPrograms() override { return 1; }
    int getCurrentProgram() override { return 0; }
    void setCurrentProgram(int) override {}
    const juce::String getProgramName(int) override { return {}; }
    void changeProgramName(int, const juce::String&) override {}
    void getStateInformation(juce::MemoryBlock& dest) override;
    void setStateInformation(const void* data, int size) override;

    // Backend state for the editor and the LV2 wrapper (any thread).
    BackendStatus backendStatus() const;
    // What a user should read: the state, and when the backend cannot start, why and the fix.
    juce::String statusMessage() const;
    std::uint64_t underrunCount() const { return underrunsShown.load(std::memory_order_relaxed); }
    // The latency the output is aligned to now (any thread). getLatencySamples() follows it
    // through the message thread; the LV2 wrapper's latency port reads this one directly.
    int latencyInUse() const { return wantedLatency.load(std::memory_order_relaxed); }

    juce::AudioProcessorValueTreeState params;

private:
    void processChunked(const float* const* in, float* const* out, int n, bool realtime);
    void pushInputChunk();
    bool resolveChunk(std::uint64_t index, bool realtime);
    void releaseChunk();
    void adoptBackendLatency();
    bool followPostfilter();
    void reportLatencyNow();
    int pathLatency(bool post) const { return post ? postfilterLatency : codecLatency; }
    int chunkSamples(double sampleRate) const;
    int marginSamples(double sampleRate) const;
    void dumpTimings();
    // Runs on the plugin's message thread: the only thread from which JUCE's VST3 wrapper
    // tells the host about a parameter change at once (performEdit), so pedalboard and DAWs
    // see the read-only meters; also re-reports the latency when it changed.
    void timerCallback() override;
    static constexpr int kMeterHz = 20;  // meter updates per second

    // Parameters (owned by params / the processor).
    std::atomic<float>* pBitrate = nullptr;
    std::atomic<float>* pNfe = nullptr;
    std::atomic<float>* pPostfilter = nullptr;
    std::atomic<float>* pMix = nullptr;
    std::atomic<float>* pSeed = nullptr;
    std::atomic<float>* pFallback = nullptr;
    std::atomic<float>* pRealtime = nullptr;
    std::atomic<float>* pChunk = nullptr;   // index into kChunkChoicesMs
    std::atomic<float>* pMargin = nullptr;  // ms
    ReadOnlyCounter* underrunParam = nullptr;
    ReadOnlyCounter* connectedParam = nullptr;
    ReadOnlyCounter* statusParam = nullptr;
    ReadOnlyCounter* latencyParam = nullptr;  // samples, as reported to the host

    // Shape of the current preparation.
    double rate = 0.0;
    int channels = 0;
    int chunk = 0;       // samples per chunk sent to the backend
    int margin = 0;      // samples of model time allowed in real time
    int blockAllowance = 0;
    int bufferLatency = 0;  // D: chunk + largest host block + margin
    // S of each path, as the backend (or the saved state) told: audio thread and prepareToPlay.
    int codecLatency = 0;
    int postfilterLatency = 0;
    bool postfilterPath = false;         // the path the stream runs (the chunks' flag)
    std::atomic<int> backendLatency{0};  // S: the backend's stream latency of that path
    std::atomic<int> wantedLatency{0};   // D + S; the timer reports it to the host
    std::uint64_t seenConnections = 0;   // audio thread: connections adopted so far
    // Both S learnt on the audio thread (codec | postfilter << 32); the timer remembers them.
    static constexpr std::uint64_t kNoLatencies = UINT64_MAX;
    std::atomic<std::uint64_t> stateLatencies{kNoLatencies};
    // Both S as the host's state keeps them, for one rate/chunk/channels ("48000/1920/2");
    // guarded: prepareToPlay, the timer and the host's state calls run on different threads.
    std::mutex rememberMutex;
    int rememberedCodecLatency = -1;
    int rememberedPostfilterLatency = -1;
    juce::String rememberedKey;
    juce::String preparedKey;  // the key of the current preparation
    bool envRealtime = false;
    int offlineTimeoutMs = 10000;
    int connectTimeoutMs = -1;  // FLOWDEC_CONNECT_TIMEOUT_MS (debugging); -1: the defaults

    std::atomic<Steinberg::FUnknown*> componentHandler{nullptr};

    SharedRegion shm;
    BackendLink link;

    // Audio-thread state (preallocated in prepareToPlay).
    std::vector<float> acc;        // [channels][chunk] input being gathered
    std::vector<float> dryLine;    // [channels][dryCap] delay line for the dry signal
    std::vector<float> scratchIn;  // [channels][blockAllowance]
    std::vector<float> scratchOut; // [channels][blockAllowance] (host has fewer channels)
    int dryCap = 0;
    std::int64_t dryWrite = 0;
    int accPos = 0;
    std::int64_t outPos = 0;       // output samples since reset
    std::uint64_t nextIndex = 0;   // block counter of the next input chunk (never decreases)
    std::uint64_t baseIndex = 0;   // block counter of the first chunk after reset
    std::uint32_t epoch = 0;
    // Output chunk being played.
    std::uint64_t curIndex = UINT64_MAX;
    std::uint64_t curPos = 0;      // ring position of the slot (valid when curOk)
    bool curOk = false;
    bool offlineStalled = false;
    bool toldNoBackend = false;
    std::uint64_t underruns = 0;
    std::atomic<std::uint64_t> underrunsShown{0};

    // processBlock timings (µs), dumped at destruction when FLOWDEC_PLUGIN_TIMING is set.
    std::vector<float> timings;
    std::vector<int> timingBlocks;
    std::size_t timingCount = 0;

    JUCE_DECLARE_NON_COPYABLE_WITH_LEAK_DETECTOR(FlowdecProcessor)
};

}  // namespace flowdec
