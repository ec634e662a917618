#!/usr/bin/env bash
# Headless PulseAudio with two null sinks for `flowdec live` tests (no sound card needed).
#
#   scripts/pulse_null_sink.sh start   # prints the PULSE_RUNTIME_PATH=... line to export
#   scripts/pulse_null_sink.sh stop
#   scripts/pulse_null_sink.sh status
#
# Sinks: flowdec_in (default sink; its monitor flowdec_in.monitor is the default source) and
# flowdec_out. Audio played into a sink comes back from "<sink>.monitor". Clients (paplay,
# parecord, sounddevice's "pulse" ALSA device) find the server through $PULSE_RUNTIME_PATH;
# choose a sink/source per client with PULSE_SINK=... / PULSE_SOURCE=...
# Needs: apt-get install pulseaudio pulseaudio-utils libasound2-plugins libportaudio2
# As root, pulseaudio prints "not intended to be run as root" and runs anyway (per-user mode).
set -euo pipefail
export PULSE_RUNTIME_PATH="${PULSE_RUNTIME_PATH:-/tmp/flowdec-pulse-$(id -u)}"

running() { pactl info >/dev/null 2>&1; }

case "${1:-}" in
  start)
    command -v pulseaudio >/dev/null || { echo "pulseaudio not installed: apt-get install pulseaudio pulseaudio-utils libasound2-plugins libportaudio2" >&2; exit 1; }
    mkdir -p "$PULSE_RUNTIME_PATH"
    if ! running; then
      pulseaudio -D --exit-idle-time=-1 -n --log-target=stderr --log-level=error \
        --load="module-null-sink sink_name=flowdec_in rate=48000 format=float32le" \
        --load="module-null-sink sink_name=flowdec_out rate=48000 format=float32le" \
        --load=module-native-protocol-unix 2>/dev/null
      for _ in $(seq 50); do running && break; sleep 0.1; done
      running || { echo "pulseaudio did not start" >&2; exit 1; }
      pactl set-default-sink flowdec_in
      pactl set-default-source flowdec_in.monitor
    fi
    echo "PULSE_RUNTIME_PATH=$PULSE_RUNTIME_PATH"
    ;;
  stop)
    if running; then pulseaudio --kill 2>/dev/null || true; fi
    for _ in $(seq 50); do running || break; sleep 0.1; done
    ;;
  status)
    running && pactl info | sed -n '1p;/Default S/p' || { echo "not running"; exit 1; }
    ;;
  *) echo "usage: $0 start|stop|status" >&2; exit 2 ;;
esac
