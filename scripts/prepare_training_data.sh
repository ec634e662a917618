#!/usr/bin/env bash
# Deterministic preparation of the FlowDec TRAINING audio from Debian 12 (bookworm, main) packages.
# docs/training-data.md says what the packages contain and why.
#
#   bash scripts/prepare_training_data.sh
#
# Env knobs:
#   OUT=dir              output (default ./flowdec_train): OUT/<domain>/<package>/<id>.flac + OUT/manifest.csv
#   WORK=dir             scratch for .deb files + extraction (default ./flowdec_work; ~4.8 GB of .deb,
#                        ~12 GB extracted; delete afterwards)
#   MUSIC_CAP_MIN=20     per-package cap for music, minutes (deterministic file order) -> ~6.5 h music
#   MUSIC_FILE_MAX_S=240 use at most the first 240 s of any music file (long game loops); the last file of a
#                        package is cut where the cap is reached
#   KEEP_CLIPPED=0       1 = keep the Spanish Tux Paint descriptions (about 10 % of their samples are clipped)
#   WITH_LOWSR=0         1 = also take files below 44.1 kHz and the 22.05 kHz Fish Fillets dialogue
#                        (+1.7 h Czech, +1.5 h Dutch speech; band-limited to <= 11 kHz, flagged in the manifest)
#   PKGS_ONLY="a b"      restrict to these packages (for a quick test)
#   JOBS=2               decoder processes
#
# Output audio: 48 kHz, mono (mean of channels), 16-bit FLAC, one file per source file, leading/trailing
# silence (< -60 dBFS) trimmed to 50 ms, loudness-normalised to -23 LUFS (BS.1770, pyloudnorm) with a
# -1 dBFS sample-peak ceiling (files < 0.4 s: RMS -23 dBFS instead), rounded to int16 without dither.
# Exact duplicates (same int16 PCM) are dropped.  split = "valid" for ~2 % of files (sha1 of package/path),
# else "train".  Crop fixed-length segments at load time with a seeded RNG (keep them out of this step).
set -euo pipefail
OUT="${OUT:-$PWD/flowdec_train}"
WORK="${WORK:-$PWD/flowdec_work}"
mkdir -p "$OUT" "$WORK/debs" "$WORK/pkg"

# package=version  (sizes: 0ad-data 1.4 GB, supertuxkart-data 0.63 GB, widelands-data 0.38 GB, ...)
PINS=(
  wesnoth-1.16-music=1:1.16.9-1  warzone2100-music=4.3.3-3  ufoai-music=2.5-2  0ad-data=0.0.26-1
  planetblupi-music-ogg=1.14.2-3  supertux-data=0.6.3-2  hedgewars-data=1.0.2-6  widelands-data=2:1.1-3
  nexuiz-music=2.5.2-12  colobot-common-sounds=0.2.0-2  supertuxkart-data=1.4+dfsg-2  drascula-music=1.0+ds4-2
  megaglest-data=3.13.0-3  warmux-data=1:11.04.1+repack2-4  fretsonfire-songs-muldjord=2.dfsg-2.1
  hyperrogue-music=12.0q-1  freeorion-data=0.4.10.2-1  frozen-bubble-data=2.212-11  xmoto-data=0.6.1+repack-9
  funnyboat=1.5-11  tuxpaint-stamps-default=2022.06.04-1  klettres-data=4:22.12.3-1
  hydrogen-drumkits=2017.09.19~dfsg-1  wordwarvi-sound=1.0.4-2  lomiri-sounds=22.02-1
  sonic-pi-samples=3.2.2~repack-8  wesnoth-1.16-data=1:1.16.9-1  openarena-data=0.8.5split-14
  oxygen-sounds=4:5.27.5-2  minetest-data=5.6.1+dfsg+~1.9.0mt8+dfsg-2  teeworlds-data=0.7.5-2
  kgoldrunner=4:22.12.3-1  sound-theme-freedesktop=0.8-2  deepin-sound-theme=15.10.6-1  kapman=4:22.12.3-1
  yaru-theme-sound=22.10.3-1  gnome-audio=2.22.2-1.2  kanagram=4:22.12.3-1  tuxpaint-data=1:0.9.28-sdl2-1
  blinken=4:22.12.3-1
)
[ "${WITH_LOWSR:-0}" = 1 ] && PINS+=(fillets-ng-data=1.0.1-1.1 fillets-ng-data-cs=1.0.1-1.1 fillets-ng-data-nl=1.0.1-1.1)

command -v ffmpeg >/dev/null && command -v unzip >/dev/null || {
  apt-get update -qq; DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends ffmpeg unzip; }
python3 -c 'import numpy, soundfile, pyloudnorm' 2>/dev/null || python3 -m pip install -q numpy soundfile pyloudnorm

cd "$WORK/debs"
for pv in "${PINS[@]}"; do
  p="${pv%%=*}"
  if [ -n "${PKGS_ONLY:-}" ] && [[ " $PKGS_ONLY " != *" $p "* ]]; then continue; fi
  ls "${p}"_*.deb >/dev/null 2>&1 || apt-get download -q "$pv" >/dev/null 2>&1 || {
    echo "WARNING: $pv unavailable, using current $p" >&2; apt-get download -q "$p" >/dev/null; }
  d="$WORK/pkg/$p"
  if [ ! -d "$d" ]; then
    dpkg-deb -x "$(ls "${p}"_*.deb | head -1)" "$d"
    case "$p" in   # audio hidden in game archives
      0ad-data)     unzip -q -o "$d/usr/share/games/0ad/mods/public/public.zip" 'audio/*' -d "$d/_zip" ;;
      nexuiz-music) unzip -q -o "$d/usr/share/games/nexuiz/data/music.pk3" -d "$d/_zip" ;;
      ufoai-music)  unzip -q -o "$d/usr/share/games/ufoai/base/0music.pk3" -d "$d/_zip" ;;
    esac
  fi
done

export OUT WORK
python3 - <<'PY'
import os, re, csv, glob, json, hashlib, subprocess, collections
from multiprocessing import Pool
import numpy as np, soundfile as sf, pyloudnorm as pyln
OUT, WORK = os.environ['OUT'], os.environ['WORK']
SR = 48000
CAP = float(os.environ.get('MUSIC_CAP_MIN', '20')) * 60
LOWSR = os.environ.get('WITH_LOWSR', '0') == '1'
JOBS = int(os.environ.get('JOBS', '2'))
KEEP_CLIPPED = os.environ.get('KEEP_CLIPPED', '0') == '1'
FILE_MAX = float(os.environ.get('MUSIC_FILE_MAX_S', '240'))
EXT = ('.ogg', '.oga', '.wav', '.flac', '.mp3', '.opus', '.aif', '.aiff', '.wv')
MUSIC_PKGS = {'wesnoth-1.16-music', 'warzone2100-music', 'ufoai-music', 'nexuiz-music', 'drascula-music',
              'fretsonfire-songs-muldjord', 'hyperrogue-music', 'planetblupi-music-ogg', 'freeorion-data',
              'xmoto-data'}

def domain(pkg, p):
    f = os.path.basename(p)
    if pkg in MUSIC_PKGS: return 'music'
    if pkg == 'frozen-bubble-data': return 'music' if 'zik' in f else 'sound'
    if pkg == 'funnyboat': return 'music' if 'JDruid' in f else 'sound'
    if pkg == 'tuxpaint-stamps-default': return 'speech' if re.search(r'_desc(_[a-z]+)?\.ogg$', f) else 'sound'
    if pkg == 'klettres-data': return 'speech'
    if pkg.startswith('fillets-ng-data'): return 'music' if '/music/' in p else 'speech'
    if pkg == 'hedgewars-data': return 'speech' if '/voices/' in p else 'music' if '/Music/' in p else 'sound'
    if pkg == '0ad-data': return 'music' if '/audio/music/' in p else 'speech' if '/audio/voice/' in p else 'sound'
    if re.search(r'/musics?/', p.lower()): return 'music'
    return 'sound'

def probe(path):
    try:   # libsndfile is ~50x faster than spawning ffprobe; ffprobe only as fallback (opus, wavpack, ...)
        i = sf.info(path)
        if i.samplerate > 0 and i.frames > 0: return i.samplerate, i.channels, i.frames / i.samplerate
    except Exception:
        pass
    o = subprocess.run(['ffprobe', '-v', 'error', '-select_streams', 'a:0', '-show_entries',
                        'stream=sample_rate,channels:format=duration', '-of', 'json', path],
                       capture_output=True, text=True).stdout
    try:
        j = json.loads(o); s = j['streams'][0]
        return int(s['sample_rate']), int(s['channels']), float(j['format']['duration'])
    except Exception:
        return 0, 0, 0.0

# ---- enumerate (sorted, byte-level dedupe), domain rules, sample-rate filter, music cap
items, seen = [], set()
for pkg in sorted(os.listdir(f'{WORK}/pkg')):
    root = f'{WORK}/pkg/{pkg}'
    files = sorted(os.path.join(dp, f) for dp, dn, fn in os.walk(root) for f in fn
                   if f.lower().endswith(EXT) and os.path.isfile(os.path.join(dp, f)))
    for p in files:
        h = hashlib.md5(open(p, 'rb').read()).hexdigest()
        if h in seen: continue
        seen.add(h)
        rel = os.path.relpath(p, root)
        dom = domain(pkg, '/' + rel)
        if pkg.startswith('fillets-ng-data') and dom == 'music': continue
        if pkg == 'tuxpaint-stamps-default' and rel.endswith('_desc_es.ogg') and not KEEP_CLIPPED:
            continue   # ~10 % of samples clipped in the Spanish recordings
        items.append(dict(pkg=pkg, rel=rel, path=p, domain=dom,
                          key=hashlib.sha1(f'{pkg}/{rel}'.encode()).hexdigest()))
with Pool(JOBS) as pool:
    for it, (sr, ch, dur) in zip(items, pool.map(probe, [i['path'] for i in items], chunksize=32)):
        it.update(sr=sr, ch=ch, dur=dur)
items = [i for i in items if i['sr'] > 0 and i['dur'] >= 0.3 and (LOWSR or i['sr'] >= 44100)]
keep, used = [], collections.defaultdict(float)
for it in sorted(items, key=lambda i: (i['pkg'], i['key'])):   # deterministic pseudo-random order
    it['max'] = None
    if it['domain'] == 'music':
        left = CAP - used[it['pkg']]
        if left < 30: continue
        take = min(it['dur'], FILE_MAX, left)
        if take < it['dur']: it['max'] = take     # first `take` seconds of the track
        used[it['pkg']] += take
    keep.append(it)

meter = pyln.Meter(SR)
def process(it):
    raw = subprocess.run(['ffmpeg', '-nostdin', '-v', 'error', '-i', it['path'], '-map', '0:a:0',
                          '-af', 'aresample=resampler=soxr', '-ar', str(SR), '-f', 'f32le', '-'],
                         capture_output=True).stdout
    ch = max(it['ch'], 1)
    x = np.frombuffer(raw[:len(raw) // (4*ch) * 4*ch], np.float32).reshape(-1, ch).astype(np.float64).mean(1)
    if it['max']: x = x[:int(it['max'] * SR)]
    if len(x) == 0: return None
    # trim leading/trailing silence (< -60 dBFS in 10 ms frames), keep 50 ms margins
    fr = 480; n = len(x) // fr
    if n == 0: return None
    e = (x[:n*fr].reshape(n, fr) ** 2).mean(1)
    act = np.where(e > 1e-6)[0]
    if len(act) == 0: return None
    a = max(0, act[0]*fr - 2400); b = min(len(x), (act[-1]+1)*fr + 2400)
    x = x[a:b]
    if len(x) < 0.3*SR: return None
    if len(x) >= 0.4*SR:
        lufs = meter.integrated_loudness(x)
        g = 10 ** ((-23 - lufs) / 20) if np.isfinite(lufs) else None
    else:
        g = None
    if g is None:
        g = 10 ** (-23/20) / max(np.sqrt((x**2).mean()), 1e-9)
    pk = np.abs(x).max()
    if pk * g > 10 ** (-1/20): g = 10 ** (-1/20) / pk
    q = np.clip(np.round(x * g * 32767), -32768, 32767).astype(np.int16)
    pcm = hashlib.sha256(q.tobytes()).hexdigest()
    d = f"{OUT}/{it['domain']}/{it['pkg']}"; os.makedirs(d, exist_ok=True)
    out = f"{d}/{it['key'][:16]}.flac"
    sf.write(out, q, SR, subtype='PCM_16', format='FLAC')
    return dict(it, out=os.path.relpath(out, OUT), seconds=len(q)/SR, pcm=pcm)

with Pool(JOBS) as pool:
    rows = [r for r in pool.imap(process, keep, chunksize=16) if r]
rows.sort(key=lambda r: (r['domain'], r['pkg'], r['key']))
vers = {}
for d in glob.glob(f'{WORK}/debs/*.deb'):
    p = os.path.basename(d).split('_')[0]
    vers[p] = subprocess.run(['dpkg-deb', '-f', d, 'Version'], capture_output=True, text=True).stdout.strip()
pcm_seen, tot = set(), collections.defaultdict(float)
with open(f'{OUT}/manifest.csv', 'w', newline='') as fh:
    w = csv.writer(fh)
    w.writerow(['file', 'domain', 'split', 'seconds', 'package', 'version', 'source_path', 'orig_sr', 'band_limited',
                'cut_at_s'])
    for r in rows:
        if r['pcm'] in pcm_seen:
            os.remove(f"{OUT}/{r['out']}"); continue
        pcm_seen.add(r['pcm'])
        split = 'valid' if int(r['key'], 16) % 50 == 0 else 'train'
        w.writerow([r['out'], r['domain'], split, f"{r['seconds']:.3f}", r['pkg'], vers.get(r['pkg'], ''),
                    r['rel'], r['sr'], int(r['sr'] < 44100), f"{r['max']:.1f}" if r['max'] else ''])
        tot[(r['domain'], split)] += r['seconds']
for k in sorted(tot): print(f'{k[0]:7s} {k[1]:5s} {tot[k]/3600:6.2f} h')
print('total', f'{sum(tot.values())/3600:.2f} h  ->', OUT)
PY
