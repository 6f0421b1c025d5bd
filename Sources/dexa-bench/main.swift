import DXProtocol
import Foundation

/// `dexa-bench`: throughput of the host's hot paths, measured in a release build.
///   dexa-bench decode [--seconds S]     frame decoding (reassembly, CRC, data payload to lines)
///   dexa-bench decompose [--seconds S]  attenuation + decomposition of 512-channel lines
///   dexa-bench analyze [--lines N]      `dexa analyze` on 20,000 and 80,000 × 512 (or N): time, peak memory
///   dexa-bench latency                  live pipeline latency at 10 × the maximum line rate
///   dexa-bench sites [--exams N]        the analysis layer: a whole exam's four sites, CPU seconds
///   dexa-bench batch [--captures N] [--keep DIR]
///                                       `dexa reanalyze` over N exam captures on 1 and all cores
/// Prints readable figures, then one JSON line for scripts.
let args = CommandLine.arguments.dropFirst()
guard let what = args.first, ["decode", "decompose", "analyze", "latency", "batch", "sites"].contains(what) else {
    FileHandle.standardError.write(Data("usage: dexa-bench decode|decompose|analyze|latency [--seconds S] | batch [--captures N] | sites [--exams N]\n".utf8))
    exit(2)
}
do {
    if what == "analyze" {
        var sizes = [20_000, 80_000]
        if let i = args.firstIndex(of: "--lines"), args.index(after: i) < args.endIndex, let n = Int(args[args.index(after: i)]), (1...1_000_000).contains(n) { sizes = [n] }
        try PipelineBenchmarks.analyze(sizes: sizes)
        exit(0)
    }
    if what == "latency" { try await PipelineBenchmarks.latency(); exit(0) }
    if what == "sites" {
        var exams = 10
        if let i = args.firstIndex(of: "--exams"), args.index(after: i) < args.endIndex, let n = Int(args[args.index(after: i)]), (1...1000).contains(n) { exams = n }
        try SitesBenchmark.run(exams: exams)
        exit(0)
    }
    if what == "batch" {
        var count = 24
        if let i = args.firstIndex(of: "--captures"), args.index(after: i) < args.endIndex, let n = Int(args[args.index(after: i)]), (1...10_000).contains(n) { count = n }
        let keep = args.firstIndex(of: "--keep").flatMap { args.index(after: $0) < args.endIndex ? args[args.index(after: $0)] : nil }
        try BatchBenchmark.run(captures: count, keep: keep)
        exit(0)
    }
} catch {
    FileHandle.standardError.write(Data("dexa-bench \(what): \(error)\n".utf8))
    exit(1)
}
var seconds = 3.0
if let i = args.firstIndex(of: "--seconds"), args.index(after: i) < args.endIndex, let s = Double(args[args.index(after: i)]), s > 0 { seconds = s }
if what == "decompose" {
    DecomposeBenchmark.run(seconds: seconds)
    exit(0)
}

// ICD data frames of 144 channels × 16 lines, as the DX-1 sends them, with realistic counts.
let channels = 144, linesPerFrame = 16, framesInStream = 512
struct XorShift { var s: UInt64; mutating func next() -> UInt64 { s ^= s << 13; s ^= s >> 7; s ^= s << 17; return s } }
var rng = XorShift(s: 12345)
var stream: [UInt8] = []
for f in 0..<framesInStream {
    var lines: [ScanLine] = []
    for i in 0..<linesPerFrame {
        var samples: [UInt16] = []
        for _ in 0..<(2 * channels) { samples.append(UInt16(truncatingIfNeeded: 20_000 + rng.next() % 20_000)) }
        lines.append(ScanLine(index: UInt32(f * linesPerFrame + i), yUm: Int32(i * 1000), xUm: 200_000, tUs: UInt64(i) * 10_000,
                              flags: [.xrayOn], samples: samples))
    }
    let payload = DataFrame(scanID: 1, firstLine: UInt32(f * linesPerFrame), channels: UInt16(channels), lines: lines).payload
    stream += try Frame(kind: .data, seq: UInt32(f + 1), payload: payload).encoded()
}
let transfer = 16_384

func run(parse: Bool, stream: [UInt8], seconds: Double) -> (mbPerS: Double, framesPerS: Double, linesPerS: Double) {
    var bytes = 0, frames = 0, lines = 0
    let clock = ContinuousClock()
    let start = clock.now
    var elapsed = 0.0
    repeat {
        var decoder = FrameDecoder()
        var offset = 0
        while offset < stream.count {
            let end = min(stream.count, offset + transfer)
            stream.withUnsafeBytes { decoder.append(UnsafeRawBufferPointer(rebasing: $0[offset..<end])) }
            while let f = decoder.next() {
                frames += 1
                if parse, let d = try? DataFrame(payload: f.payload) { lines += d.lines.count }
            }
            offset = end
        }
        bytes += stream.count
        let d = clock.now - start
        elapsed = Double(d.components.seconds) + Double(d.components.attoseconds) * 1e-18
    } while elapsed < seconds
    return (Double(bytes) / elapsed / 1e6, Double(frames) / elapsed, Double(lines) / elapsed)
}

let crcOnly = run(parse: false, stream: stream, seconds: seconds)
let full = run(parse: true, stream: stream, seconds: seconds)
print("frame stream: \(stream.count) bytes, \(framesInStream) data frames of \(channels) channels × \(linesPerFrame) lines, fed in \(transfer)-byte transfers")
print(String(format: "reassembly + CRC:            %8.1f MB/s  %9.0f frames/s", crcOnly.mbPerS, crcOnly.framesPerS))
print(String(format: "reassembly + CRC + lines:    %8.1f MB/s  %9.0f frames/s  %10.0f lines/s", full.mbPerS, full.framesPerS, full.linesPerS))
print("{\"decode_mb_s\": \(String(format: "%.1f", full.mbPerS)), \"frame_only_mb_s\": \(String(format: "%.1f", crcOnly.mbPerS)), \"lines_per_s\": \(Int(full.linesPerS))}")
