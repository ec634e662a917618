#!/usr/bin/env bash
# Build the flowdec VST3/LV2 plugin and the small LV2 test host (plugin/build/).
#   plugin/build.sh            # Release, $JOBS (default 2) parallel jobs
# Needs (Debian 12): apt-get install juce-modules-source liblilv-dev lilv-utils lv2-dev \
#   libasound2-dev libfreetype-dev libx11-dev libxrandr-dev libxinerama-dev libxcursor-dev \
#   libxext-dev pkg-config cmake g++
set -euo pipefail
here="$(cd "$(dirname "$0")" && pwd)"
build="${FLOWDEC_PLUGIN_BUILD:-$here/build}"
rm -rf "$build/FlowdecPlugin_artefacts/Release/LV2"  # JUCE's LV2 bundle of older builds
cmake -S "$here" -B "$build" -DCMAKE_BUILD_TYPE=Release
cmake --build "$build" --parallel "${JOBS:-2}"
echo "VST3: $build/FlowdecPlugin_artefacts/Release/VST3/Flowdec.vst3"
echo "LV2:  $build/lv2/Flowdec.lv2"
