// Opens the plugin's editor without a host or a window and prints the status line a user
// would read (tests/test_plugin_vst3.py runs it with a backend that cannot start).
#include <juce_audio_processors/juce_audio_processors.h>

#include <chrono>
#include <cstdio>
#include <thread>

#include "../Source/PluginEditor.h"
#include "../Source/PluginProcessor.h"

int main() {
    const juce::ScopedJuceInitialiser_GUI gui;
    auto processor = std::make_unique<flowdec::FlowdecProcessor>();
    processor->setPlayConfigDetails(2, 2, 48000.0, 512);
    processor->prepareToPlay(48000.0, 512);  // starts the backend, or finds it cannot start
    for (int i = 0; i < 600 && processor->backendStatus() == flowdec::kStatusStarting; ++i)
        std::this_thread::sleep_for(std::chrono::milliseconds(100));
    {
        const flowdec::FlowdecEditor editor(*processor);
        std::printf("status %d\n%s\n", static_cast<int>(processor->backendStatus()),
                    editor.statusText().toRawUTF8());
    }
    processor.reset();
    return 0;
}
