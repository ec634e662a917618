/* A tiny LV2 host (lilv) for tests: loads a plugin by URI from a bundle, runs a sine
 * through it in blocks and prints one line
 * "ok <frames> <peak_in> <peak_out> <latency> <latency after the first block>".
 *
 *   flowdec_lv2host BUNDLE_DIR URI [frames] [block] [rate] [SYMBOL=VALUE[@FRAME]]...
 *
 * SYMBOL=VALUE sets a control port before activation; with @FRAME, from the block that
 * starts at or after that frame on.
 */
#include <lilv/lilv.h>
#include <lv2/atom/atom.h>
#include <lv2/buf-size/buf-size.h>
#include <lv2/core/lv2.h>
#include <lv2/options/options.h>
#include <lv2/urid/urid.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

/* A minimal URID map: the index of the URI in a growing table, from 1. */
static char* uris[256];
static unsigned n_uris = 0;

static LV2_URID map_uri(LV2_URID_Map_Handle handle, const char* uri) {
    (void)handle;
    for (unsigned i = 0; i < n_uris; ++i)
        if (strcmp(uris[i], uri) == 0) return i + 1;
    if (n_uris == 256) return 0;
    uris[n_uris] = strdup(uri);
    return ++n_uris;
}

static const char* unmap_uri(LV2_URID_Unmap_Handle handle, LV2_URID urid) {
    (void)handle;
    return (urid >= 1 && urid <= n_uris) ? uris[urid - 1] : NULL;
}

/* One SYMBOL=VALUE[@FRAME] argument. */
typedef struct {
    char symbol[64];
    float value;
    long frame; /* -1: before activation */
    int port;
} Setting;

int main(int argc, char** argv) {
    if (argc < 3) {
        fprintf(stderr, "usage: %s BUNDLE_DIR URI [frames] [block] [rate] [SYMBOL=VALUE[@FRAME]]...\n", argv[0]);
        return 2;
    }
    Setting settings[16];
    int n_settings = 0;
    for (int a = 6; a < argc && n_settings < 16; ++a) {
        Setting* s = &settings[n_settings];
        const char* eq = strchr(argv[a], '=');
        if (!eq || eq == argv[a] || (size_t)(eq - argv[a]) >= sizeof s->symbol) {
            fprintf(stderr, "not SYMBOL=VALUE[@FRAME]: %s\n", argv[a]);
            return 2;
        }
        memcpy(s->symbol, argv[a], (size_t)(eq - argv[a]));
        s->symbol[eq - argv[a]] = '\0';
        s->value = (float)atof(eq + 1);
        const char* at = strchr(eq, '@');
        s->frame = at ? atol(at + 1) : -1;
        s->port = -1;
        ++n_settings;
    }
    const long frames = argc > 3 ? atol(argv[3]) : 48000;
    const unsigned block = argc > 4 ? (unsigned)atoi(argv[4]) : 512;
    const double rate = argc > 5 ? atof(argv[5]) : 48000.0;

    LilvWorld* world = lilv_world_new();
    char bundle[4096];
    snprintf(bundle, sizeof bundle, "file://%s%s", argv[1], argv[1][strlen(argv[1]) - 1] == '/' ? "" : "/");
    LilvNode* bundle_uri = lilv_new_uri(world, bundle);
    lilv_world_load_bundle(world, bundle_uri);
    LilvNode* uri = lilv_new_uri(world, argv[2]);
    const LilvPlugin* plugin = lilv_plugins_get_by_uri(lilv_world_get_all_plugins(world), uri);
    if (!plugin) {
        fprintf(stderr, "plugin %s not found in %s\n", argv[2], bundle);
        return 1;
    }
    LV2_URID_Map map = {NULL, map_uri};
    LV2_URID_Unmap unmap = {NULL, unmap_uri};
    const int32_t max_block = (int32_t)block, min_block = 1;
    const LV2_URID int_type = map_uri(NULL, LV2_ATOM__Int);
    LV2_Options_Option options[] = {
        {LV2_OPTIONS_INSTANCE, 0, map_uri(NULL, LV2_BUF_SIZE__maxBlockLength), sizeof(int32_t), int_type, &max_block},
        {LV2_OPTIONS_INSTANCE, 0, map_uri(NULL, LV2_BUF_SIZE__minBlockLength), sizeof(int32_t), int_type, &min_block},
        {LV2_OPTIONS_INSTANCE, 0, 0, 0, 0, NULL}};
    LV2_Feature map_feature = {LV2_URID__map, &map};
    LV2_Feature unmap_feature = {LV2_URID__unmap, &unmap};
    LV2_Feature options_feature = {LV2_OPTIONS__options, options};
    LV2_Feature bounded_feature = {LV2_BUF_SIZE__boundedBlockLength, NULL};
    const LV2_Feature* features[] = {&map_feature, &unmap_feature, &options_feature, &bounded_feature, NULL};
    LilvInstance* inst = lilv_plugin_instantiate(plugin, rate, features);
    if (!inst) {
        fprintf(stderr, "instantiation failed\n");
        return 1;
    }
    LilvNode* audio = lilv_new_uri(world, LV2_CORE__AudioPort);
    LilvNode* input = lilv_new_uri(world, LV2_CORE__InputPort);
    LilvNode* control = lilv_new_uri(world, LV2_CORE__ControlPort);
    LilvNode* latency_node = lilv_new_uri(world, LV2_CORE__reportsLatency);
    LilvNode* atom_port = lilv_new_uri(world, LV2_ATOM__AtomPort);
    /* Atom ports: an empty input sequence, an 8 kB output buffer (re-armed every run). */
    uint64_t atom_bufs[16][1024];
    int atom_is_input[16];
    uint32_t atom_index[16];
    unsigned n_atoms = 0;
    const LV2_URID seq_type = map_uri(NULL, LV2_ATOM__Sequence);
    const LV2_URID chunk_type = map_uri(NULL, LV2_ATOM__Chunk);
    const uint32_t nports = lilv_plugin_get_num_ports(plugin);
    float* controls = calloc(nports, sizeof(float));
    float* bufs = calloc((size_t)nports * block, sizeof(float));
    float* mins = calloc(nports, sizeof(float));
    float* maxs = calloc(nports, sizeof(float));
    float* defs = calloc(nports, sizeof(float));
    lilv_plugin_get_port_ranges_float(plugin, mins, maxs, defs);
    int latency_port = -1;
    for (uint32_t p = 0; p < nports; ++p) {
        const LilvPort* port = lilv_plugin_get_port_by_index(plugin, p);
        if (lilv_port_is_a(plugin, port, audio)) {
            lilv_instance_connect_port(inst, p, bufs + (size_t)p * block);
        } else if (lilv_port_is_a(plugin, port, control)) {
            controls[p] = isnan(defs[p]) ? 0.0f : defs[p];
            if (lilv_port_has_property(plugin, port, latency_node)) latency_port = (int)p;
            lilv_instance_connect_port(inst, p, &controls[p]);
        } else if (lilv_port_is_a(plugin, port, atom_port) && n_atoms < 16) {
            atom_is_input[n_atoms] = lilv_port_is_a(plugin, port, input);
            atom_index[n_atoms] = p;
            lilv_instance_connect_port(inst, p, atom_bufs[n_atoms]);
            ++n_atoms;
        } else {
            lilv_instance_connect_port(inst, p, NULL);
        }
    }
    for (int k = 0; k < n_settings; ++k) {
        LilvNode* sym = lilv_new_string(world, settings[k].symbol);
        const LilvPort* port = lilv_plugin_get_port_by_symbol(plugin, sym);
        lilv_node_free(sym);
        if (!port || !lilv_port_is_a(plugin, port, control) || !lilv_port_is_a(plugin, port, input)) {
            fprintf(stderr, "no control input port %s\n", settings[k].symbol);
            return 2;
        }
        settings[k].port = (int)lilv_port_get_index(plugin, port);
        if (settings[k].frame < 0) controls[settings[k].port] = settings[k].value;
    }
    lilv_instance_activate(inst);
    double peak_in = 0.0, peak_out = 0.0;
    float first_latency = -1.0f;
    for (long done = 0; done < frames; done += block) {
        for (int k = 0; k < n_settings; ++k)
            if (settings[k].frame >= 0 && done >= settings[k].frame) controls[settings[k].port] = settings[k].value;
        for (uint32_t p = 0; p < nports; ++p) {
            const LilvPort* port = lilv_plugin_get_port_by_index(plugin, p);
            if (!lilv_port_is_a(plugin, port, audio) || !lilv_port_is_a(plugin, port, input)) continue;
            for (unsigned i = 0; i < block; ++i) {
                const float v = 0.5f * (float)sin(2.0 * M_PI * 440.0 * (double)(done + i) / rate);
                bufs[(size_t)p * block + i] = v;
                if (fabs(v) > peak_in) peak_in = fabs(v);
            }
        }
        for (unsigned a = 0; a < n_atoms; ++a) {
            LV2_Atom_Sequence* seq = (LV2_Atom_Sequence*)atom_bufs[a];
            if (atom_is_input[a]) {
                seq->atom.size = sizeof(LV2_Atom_Sequence_Body);
                seq->atom.type = seq_type;
            } else {
                seq->atom.size = sizeof(atom_bufs[a]) - sizeof(LV2_Atom);
                seq->atom.type = chunk_type;
            }
            seq->body.unit = 0;
            seq->body.pad = 0;
            (void)atom_index[a];
        }
        lilv_instance_run(inst, block);
        if (done == 0 && latency_port >= 0) first_latency = controls[latency_port];
        for (uint32_t p = 0; p < nports; ++p) {
            const LilvPort* port = lilv_plugin_get_port_by_index(plugin, p);
            if (!lilv_port_is_a(plugin, port, audio) || lilv_port_is_a(plugin, port, input)) continue;
            for (unsigned i = 0; i < block; ++i) {
                const float v = bufs[(size_t)p * block + i];
                if (fabs(v) > peak_out) peak_out = fabs(v);
            }
        }
    }
    lilv_instance_deactivate(inst);
    printf("ok %ld %.4f %.4f %.0f %.0f\n", frames, peak_in, peak_out,
           latency_port >= 0 ? controls[latency_port] : -1.0, (double)first_latency);
    lilv_instance_free(inst);
    lilv_node_free(audio);
    lilv_node_free(input);
    lilv_node_free(control);
    lilv_node_free(latency_node);
    lilv_node_free(atom_port);
    lilv_node_free(uri);
    lilv_node_free(bundle_uri);
    lilv_world_free(world);
    free(controls);
    free(bufs);
    free(mins);
    free(maxs);
    free(defs);
    return 0;
}
