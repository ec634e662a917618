// The plugin's editor: JUCE's generic parameter editor under a status line that says whether
// the backend runs, and when it cannot start, why and how to fix it.
#pragma once

#include <juce_audio_processors/juce_audio_processors.h>

namespace flowdec {

class FlowdecProcessor;

class FlowdecEditor : public juce::AudioProcessorEditor, private juce::Timer {
public:
    explicit FlowdecEditor(FlowdecProcessor& p);
    ~FlowdecEditor() override;
    void resized() override;
    juce::String statusText() const { return status.getText(); }  // what the user reads

private:
    void timerCallback() override;
    static constexpr int kStatusHeight = 96;

    FlowdecProcessor& processor;
    juce::Label status;
    juce::GenericAudioProcessorEditor generic;
};

}  // namespace flowdec
