#include "PluginEditor.h"

#include "PluginProcessor.h"

namespace flowdec {

FlowdecEditor::FlowdecEditor(FlowdecProcessor& p)
    : AudioProcessorEditor(p), processor(p), generic(p) {
    status.setJustificationType(juce::Justification::topLeft);
    status.setMinimumHorizontalScale(1.0f);
    addAndMakeVisible(status);
    addAndMakeVisible(generic);
    setSize(std::max(generic.getWidth(), 560), generic.getHeight() + kStatusHeight);
    timerCallback();
    startTimerHz(4);
}

FlowdecEditor::~FlowdecEditor() { stopTimer(); }

void FlowdecEditor::resized() {
    auto area = getLocalBounds();
    status.setBounds(area.removeFromTop(kStatusHeight).reduced(6));
    generic.setBounds(area);
}

void FlowdecEditor::timerCallback() {
    const juce::String text = processor.statusMessage();
    if (text != status.getText()) status.setText(text, juce::dontSendNotification);
    const auto colour = processor.backendStatus() == kStatusFailed ? juce::Colours::orangered
                        : processor.backendStatus() == kStatusConnected ? juce::Colours::lightgreen
                                                                        : juce::Colours::yellow;
    status.setColour(juce::Label::textColourId, colour);
}

}  // namespace flowdec
