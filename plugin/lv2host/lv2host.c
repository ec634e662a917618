/* A tiny LV2 host (lilv) for tests: loads a plugin by URI from a bundle, runs a sine
 * through it in blocks and prints one line "ok <frames> <peak_in> <peak_out> <latency>".
 *
 *   flowdec_lv2host BUNDLE_DIR URI [frames] [block] [rate]
 */
#include <lilv/lilv.h>
#include <lv2/core/lv2.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

int main(int argc, char** argv) {
    if (argc < 3) {
        fprintf(stderr, "usage: %s BUNDLE_DIR URI [frames] [block] [rate]\n", argv[0]);
        return 2;
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
    LilvInstance* inst = lilv_plugin_instantiate(plugin, rate, NULL);
    if (!inst) {
        fprintf(stderr, "instantiation failed\n");
        return 1;
    }
    LilvNode* audio = lilv_new_uri(world, LV2_CORE__AudioPort);
    LilvNode* input = lilv_new_uri(world, LV2_CORE__InputPort);
    LilvNode* control = lilv_new_uri(world, LV2_CORE__ControlPort);
    LilvNode* latency_node = lilv_new_uri(world, LV2_CORE__reportsLatency);
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
        } else {
            lilv_instance_connect_port(inst, p, NULL);
        }
    }
    lilv_instance_activate(inst);
    double peak_in = 0.0, peak_out = 0.0;
    for (long done = 0; done < frames; done += block) {
        for (uint32_t p = 0; p < nports; ++p) {
            const LilvPort* port = lilv_plugin_get_port_by_index(plugin, p);
            if (!lilv_port_is_a(plugin, port, audio) || !lilv_port_is_a(plugin, port, input)) continue;
            for (unsigned i = 0; i < block; ++i) {
                const float v = 0.5f * (float)sin(2.0 * M_PI * 440.0 * (double)(done + i) / rate);
                bufs[(size_t)p * block + i] = v;
                if (fabs(v) > peak_in) peak_in = fabs(v);
            }
        }
        lilv_instance_run(inst, block);
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
    printf("ok %ld %.4f %.4f %.0f\n", frames, peak_in, peak_out, latency_port >= 0 ? controls[latency_port] : -1.0);
    lilv_instance_free(inst);
    lilv_node_free(audio);
    lilv_node_free(input);
    lilv_node_free(control);
    lilv_node_free(latency_node);
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
