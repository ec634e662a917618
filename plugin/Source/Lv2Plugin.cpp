// The LV2 build: a small wrapper around FlowdecProcessor with plain LV2 ports (audio, control,
// a latency output, freewheeling), so that every LV2 host can load it, set its controls and
// read them back, including hosts without atom ports or features (lv2apply, lv2file). The
// port list is plugin/lv2/flowdec.ttl.in; a port's index here must match it.
#include <lv2/core/lv2.h>
#include <lv2/buf-size/buf-size.h>
#include <lv2/options/options.h>
#include <lv2/urid/urid.h>

#include <juce_audio_processors/juce_audio_processors.h>

#include <cmath>
#include <cstring>
#include <memory>

#include "PluginProcessor.h"

namespace juce {
bool dispatchNextMessageOnSystemQueue(bool returnIfNoPendingMessages);  // juce_events (Linux)
}

namespace flowdec {
namespace {

enum Port : std::uint32_t {
    kInL, kInR, kOutL, kOutR,
    kBitrate, kNfe, kPostfilter, kMix, kSeed, kFallback, kChunkMs, kMarginMs, kForceRealtime,
    kFreewheel, kLatency, kStatus, kUnderruns,
    kNumPorts
};

// Control port -> parameter ID (empty: not a parameter).
const char* const kParamIds[kNumPorts] = {
    "", "", "", "",
    "bitrate", "nfe", "postfilter", "mix", "seed", "fallback", "chunk_ms", "margin_ms", "force_realtime",
    "", "", "", ""};

constexpr int kDefaultMaxBlock = 4096;  // when the host does not say (lv2apply)

// JUCE's message loop on its own thread (timers, parameter notifications): LV2 hosts run none.
class MessageLoop : public juce::Thread {
public:
    MessageLoop() : Thread("flowdec LV2 messages") {
        startThread();
        started.wait(10000);
    }
    ~MessageLoop() override {
        signalThreadShouldExit();
        stopThread(-1);
    }
    void run() override {
        juce::MessageManager::getInstance()->setCurrentThreadAsMessageThread();
        started.signal();
        while (!threadShouldExit())
            if (!juce::dispatchNextMessageOnSystemQueue(true)) sleep(1);
    }

private:
    juce::WaitableEvent started;
};

struct Instance {
    juce::ScopedJuceInitialiser_GUI juceInit;
    juce::SharedResourcePointer<MessageLoop> loop;
    std::unique_ptr<FlowdecProcessor> proc;
    double rate = 48000.0;
    int maxBlock = kDefaultMaxBlock;
    float* ports[kNumPorts] = {};
    float applied[kNumPorts] = {};
    juce::AudioBuffer<float> buffer;
    juce::MidiBuffer midi;

    // Host control values -> parameters (only those that moved).
    void applyControls(bool all) {
        for (std::uint32_t i = 0; i < kNumPorts; ++i) {
            if (kParamIds[i][0] == '\0' || ports[i] == nullptr) continue;
            const float v = *ports[i];
            if (!all && v == applied[i]) continue;
            applied[i] = v;
            auto* p = proc->params.getParameter(kParamIds[i]);
            if (p == nullptr) continue;
            float plain = v;
            if (i == kChunkMs) {  // milliseconds -> the nearest offered chunk
                int best = 0;
                for (int k = 0; k < static_cast<int>(std::size(kChunkChoicesMs)); ++k)
                    if (std::abs(kChunkChoicesMs[k] - v) < std::abs(kChunkChoicesMs[best] - v)) best = k;
                plain = static_cast<float>(best);
            }
            p->setValueNotifyingHost(p->convertTo0to1(plain));
        }
    }

    void activate() {
        applyControls(true);
        proc->setNonRealtime(ports[kFreewheel] != nullptr && *ports[kFreewheel] > 0.5f);
        proc->setPlayConfigDetails(2, 2, rate, maxBlock);
        proc->prepareToPlay(rate, maxBlock);
        buffer.setSize(2, maxBlock);
    }

    void run(std::uint32_t n) {
        applyControls(false);  // chunk and margin take effect at the next activation
        proc->setNonRealtime(ports[kFreewheel] != nullptr && *ports[kFreewheel] > 0.5f);
        for (std::uint32_t done = 0; done < n;) {
            const int m = static_cast<int>(std::min<std::uint32_t>(n - done, static_cast<std::uint32_t>(maxBlock)));
            juce::AudioBuffer<float> view(buffer.getArrayOfWritePointers(), 2, m);
            for (int c = 0; c < 2; ++c) {
                const float* in = ports[kInL + c];
                if (in != nullptr) std::memcpy(view.getWritePointer(c), in + done, sizeof(float) * static_cast<std::size_t>(m));
                else view.clear(c, 0, m);
            }
            proc->processBlock(view, midi);
            for (int c = 0; c < 2; ++c)
                if (float* out = ports[kOutL + c])
                    std::memcpy(out + done, view.getReadPointer(c), sizeof(float) * static_cast<std::size_t>(m));
            done += static_cast<std::uint32_t>(m);
        }
        // the latency of this very block (the postfilter switched in it restarts the stream)
        if (ports[kLatency]) *ports[kLatency] = static_cast<float>(proc->latencyInUse());
        if (ports[kStatus]) *ports[kStatus] = static_cast<float>(proc->backendStatus());
        if (ports[kUnderruns]) *ports[kUnderruns] = static_cast<float>(proc->underrunCount());
    }
};

int maxBlockOption(const LV2_Feature* const* features) {
    const LV2_URID_Map* map = nullptr;
    const LV2_Options_Option* options = nullptr;
    for (int i = 0; features != nullptr && features[i] != nullptr; ++i) {
        if (std::strcmp(features[i]->URI, LV2_URID__map) == 0) map = static_cast<const LV2_URID_Map*>(features[i]->data);
        if (std::strcmp(features[i]->URI, LV2_OPTIONS__options) == 0)
            options = static_cast<const LV2_Options_Option*>(features[i]->data);
    }
    if (map == nullptr || options == nullptr) return kDefaultMaxBlock;
    const LV2_URID key = map->map(map->handle, LV2_BUF_SIZE__maxBlockLength);
    const LV2_URID intType = map->map(map->handle, "http://lv2plug.in/ns/ext/atom#Int");
    for (const LV2_Options_Option* o = options; o->key != 0 || o->value != nullptr; ++o)
        if (o->key == key && o->type == intType && o->size == sizeof(std::int32_t) && o->value != nullptr)
            return std::max(1, *static_cast<const std::int32_t*>(o->value));
    return kDefaultMaxBlock;
}

LV2_Handle instantiate(const LV2_Descriptor*, double rate, const char*, const LV2_Feature* const* features) {
    auto inst = std::make_unique<Instance>();
    inst->rate = rate;
    inst->maxBlock = maxBlockOption(features);
    {
        const juce::MessageManagerLock lock;
        inst->proc = std::make_unique<FlowdecProcessor>();
    }
    return inst.release();
}

void connectPort(LV2_Handle h, std::uint32_t port, void* data) {
    if (port < kNumPorts) static_cast<Instance*>(h)->ports[port] = static_cast<float*>(data);
}

void activate(LV2_Handle h) { static_cast<Instance*>(h)->activate(); }
void run(LV2_Handle h, std::uint32_t n) { static_cast<Instance*>(h)->run(n); }
void deactivate(LV2_Handle) {}

void cleanup(LV2_Handle h) {
    auto* inst = static_cast<Instance*>(h);
    {
        const juce::MessageManagerLock lock;
        inst->proc.reset();
    }
    delete inst;
}

const void* extensionData(const char*) { return nullptr; }

const LV2_Descriptor kDescriptor = {FLOWDEC_LV2_URI, instantiate, connectPort, activate, run, deactivate, cleanup,
                                    extensionData};

}  // namespace
}  // namespace flowdec

LV2_SYMBOL_EXPORT const LV2_Descriptor* lv2_descriptor(std::uint32_t index) {
    return index == 0 ? &flowdec::kDescriptor : nullptr;
}
