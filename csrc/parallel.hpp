// parallel_for: split a range over std::threads (no pool; the work items are large).
#pragma once

#include <algorithm>
#include <exception>
#include <mutex>
#include <thread>
#include <vector>

namespace flowdec {

template <class Fn>
void parallel_for(std::size_t n, Fn&& fn) {
    if (n == 0) return;
    const std::size_t workers =
        std::min<std::size_t>(n, static_cast<std::size_t>(std::max(1, num_threads())));
    if (workers <= 1) {
        fn(std::size_t{0}, n);
        return;
    }
    std::exception_ptr error;
    std::mutex error_mutex;
    auto run = [&](std::size_t begin, std::size_t end) {
        try {
            fn(begin, end);
        } catch (...) {
            std::lock_guard<std::mutex> lock(error_mutex);
            if (!error) error = std::current_exception();
        }
    };
    std::vector<std::thread> threads;
    threads.reserve(workers - 1);
    const std::size_t chunk = (n + workers - 1) / workers;
    for (std::size_t w = 1; w < workers; ++w) {
        const std::size_t begin = w * chunk;
        const std::size_t end = std::min(n, begin + chunk);
        if (begin < end) threads.emplace_back(run, begin, end);
    }
    run(0, std::min(n, chunk));
    for (auto& t : threads) t.join();
    if (error) std::rethrow_exception(error);
}

}  // namespace flowdec
