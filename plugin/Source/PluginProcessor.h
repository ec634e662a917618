// flowdec plugin: streams audio in fixed chunks to the shared flowdec backend and plays back
// its output `latency` samples later. processBlock never waits, allocates or locks in
// real-time use; when a chunk is late or the backend is absent it plays the dry signal
// delayed by the same latency (or silence) and counts an under-run.
#pragma once

#include <juce_audio_processors/juce_audio_processors.h>

#include <atomic>
#include <vector>

#include "BackendLink.h"

namespace flowdec {

// A read-only integer shown to the host (under-runs, connection state).
class ReadOnlyCounter : public juce::AudioProcessorParameter {
public:
    ReadOnlyCounter(juce::String id, juce::String name, float maxValue)
        : id_(std::move(id)), name_(std::move(name)), max_(maxValue) {}
    void set(float v) { value_.store(v, std::memory_order_relaxed); }
    // Tell the host when the value moved since the last call (takes JUCE's listener lock;
    // call it on the message thread, never from processBlock).
    void publish() {
        const float v = getValue();
        if (published_.exchange(v) != v) sendValueChangedMessageToListeners(v);
    }
    float getValue() const override { return std::min(value_.load(std::memory_order_relaxed), max_) / max_; }
    void setValue(float) override {}
    float getDefaultValue() const override { return 0.0f; }
    juce::String getName(int maxLen) const override { return name_.substring(0, maxLen); }
    juce::String getLabel() const override { return {}; }
    juce::String getText(float v, int) const override { return juce::String(juce::roundToInt(v * max_)); }
    float getValueForText(const juce::String& t) const override { return t.getFloatValue() / max_; }
    bool isAutomatable() const override { return false; }
    bool isMetaParameter() const override { return true; }
    int getNumSteps() const override { return static_cast<int>(max_) + 1; }
    bool isDiscrete() const override { return true; }
    juce::String getParameterID() const { return id_; }

private:
    juce::String id_, name_;
    float max_;
    std::atomic<float> value_{0.0f};
    std::atomic<float> published_{0.0f};
};

class FlowdecProcessor : public juce::AudioProcessor, private juce::Timer {
public:
    FlowdecProcessor();
    ~FlowdecProcessor() override;

    void prepareToPlay(double sampleRate, int maximumExpectedSamplesPerBlock) override;
    void releaseResources() override {}
    void reset() override;
    bool isBusesLayoutSupported(const BusesLayout& layouts) const override;
    void processBlock(juce::AudioBuffer<float>&, juce::MidiBuffer&) override;

    juce::AudioProcessorEditor* createEditor() override { return new juce::GenericAudioProcessorEditor(*this); }
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

    juce::AudioProcessorValueTreeState params;

private:
    void processChunked(const float* const* in, float* const* out, int n, bool realtime);
    void pushInputChunk();
    bool resolveChunk(std::uint64_t index, bool realtime);
    void releaseChunk();
    void growBlock(int maxBlock);
    void dumpTimings();
    // Runs on the plugin's message thread: the only thread from which JUCE's VST3 wrapper
    // tells the host about a parameter change at once (performEdit), so pedalboard and DAWs
    // see the read-only meters.
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
    ReadOnlyCounter* underrunParam = nullptr;
    ReadOnlyCounter* connectedParam = nullptr;
    ReadOnlyCounter* latencyParam = nullptr;  // samples, as reported to the host

    // Shape of the current preparation.
    double rate = 0.0;
    int channels = 0;
    int chunk = 0;       // samples per chunk sent to the backend
    int blockAllowance = 0;
    int bufferLatency = 0;  // D: chunk + largest host block + model time + margin
    std::atomic<int> backendLatency{0};  // S, from the handshake
    bool envRealtime = false;
    int offlineTimeoutMs = 10000;

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
    std::uint64_t underruns = 0;

    // processBlock timings (µs), dumped at destruction when FLOWDEC_PLUGIN_TIMING is set.
    std::vector<float> timings;
    std::vector<int> timingBlocks;
    std::size_t timingCount = 0;

    JUCE_DECLARE_NON_COPYABLE_WITH_LEAK_DETECTOR(FlowdecProcessor)
};

}  // namespace flowdec
