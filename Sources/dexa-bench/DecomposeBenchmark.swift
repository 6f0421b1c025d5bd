import DXDecomposition
import DXProtocol
import DXSimulator
import Foundation

/// `dexa-bench decompose`: attenuation and decomposition of 512-channel lines on one core.
/// Input comes from the simulator's detector looking at the bench phantoms; the calibration
/// is fitted from its calibration phantom first (not timed).
enum DecomposeBenchmark {
    static func lines(_ d: inout Detector, _ scene: any Scene, mode: ScanMode, x: Int32 = 200_000, y0: Int32, y1: Int32, step: Int32,
                      period: UInt32, current: UInt32) -> [ScanLine] {
        var out: [ScanLine] = []
        var y = y0, i: UInt32 = 0
        while y < y1 {
            let r = d.readLine(mode: mode, xUm: x, yUm: y, periodUs: period, currentUA: current, outputFactor: 1, scene: scene)
            var flags: LineFlags = mode == .dark ? [] : [.xrayOn]
            if r.saturated { flags.insert(.saturated) }
            out.append(ScanLine(index: i, yUm: y, xUm: x, tUs: UInt64(i) * UInt64(period), flags: flags, samples: r.samples))
            y += step; i += 1
        }
        return out
    }

    /// Dark, air and the two calibration passes over the simulator's calibration phantom
    /// (as `service.calibrate` makes them), fitted.
    static func calibrate(_ d: inout Detector, geometry: ScanGeometry) throws -> (AttenuationStage, Calibration) {
        let dark = try DarkReference(lines: lines(&d, EmptyTable(), mode: .dark, y0: 1_910_000, y1: 1_960_000, step: 1000, period: 10_000, current: 0))
        let air = try AirReference(lines: lines(&d, EmptyTable(), mode: .dual, y0: 1_910_000, y1: 1_960_000, step: 1000, period: 10_000, current: 1000),
                                   dark: dark, periodUs: 10_000, currentUA: 1000)
        let stage = AttenuationStage(dark: dark, air: air)
        let scene = PhantomScene(StandardPhantoms.calibration)
        var att: [AttenuationLine] = []
        guard let procedure = CalibrationProcedure(phantom: StandardPhantoms.calibration, travelXUm: 400_000) else { throw DecompositionError.noLines("calibration") }
        for p in procedure.passes {
            let prepared = stage.prepared(periodUs: p.linePeriodUs, currentUA: p.tubeCurrentUA)
            for l in lines(&d, scene, mode: .dual, x: p.xUm, y0: p.yStartUm, y1: p.yStartUm + Int32(p.lineCount) * p.lineStepUm, step: p.lineStepUm,
                           period: p.linePeriodUs, current: p.tubeCurrentUA) { att.append(try prepared.process(l)) }
        }
        let measurement = try CalibrationMeasurement.measure(lines: att, geometry: geometry, phantom: StandardPhantoms.calibration)
        return (stage, try Calibration.fit(measurement, source: "benchmark"))
    }

    /// Pixels per second of a plain copy of `input`'s samples, line by line, for `seconds`.
    static func copyLimit(_ input: [ScanLine], seconds: Double) -> Double {
        let widest = input.map(\.samples.count).max() ?? 0
        var target = [UInt16](repeating: 0, count: widest)
        let clock = ContinuousClock(), start = clock.now
        var pixels = 0, elapsed = 0.0, check = 0
        repeat {
            for line in input {
                line.samples.withUnsafeBytes { from in
                    target.withUnsafeMutableBytes { to in to.copyMemory(from: from) }
                }
                check &+= Int(target[line.samples.count / 2])
                pixels += line.samples.count / 2
            }
            elapsed = (clock.now - start).seconds
        } while elapsed < seconds
        // The copy's result is used, so that it is not optimised away.
        if check == -1 { print(check) }
        return Double(pixels) / elapsed
    }

    static func run(seconds: Double) {
        let channels = 512, pitch = 300
        var d = Detector(channels: channels, pitchUm: pitch, seed: 1)
        do {
            let (stage, calibration) = try calibrate(&d, geometry: ScanGeometry(channels: channels, pitchUm: pitch))
            let bench = PhantomScene(StandardPhantoms.bench)
            let decomposer = Decomposer(calibration: calibration, pitchUm: pitch)
            let prepared = stage.prepared(periodUs: 40_000, currentUA: 2000, calibration: calibration)
            let input = lines(&d, bench, mode: .dual, y0: 505_000, y1: 695_000, step: 500, period: 40_000, current: 2000)
            let clock = ContinuousClock()
            var pixels = 0, latencies: [Double] = []
            let start = clock.now
            var elapsed = 0.0
            var checksum = 0.0
            // As the live pipeline decomposes: in order, with the scan's memory (a new scan each
            // pass over the lines).
            repeat {
                var memory: TissueMemory? = TissueMemory(channels: channels)
                for line in input {
                    let t0 = clock.now
                    let out = decomposer.decompose(try prepared.process(line), memory: &memory)
                    let dt = clock.now - t0
                    latencies.append(Double(dt.components.attoseconds) * 1e-12 + Double(dt.components.seconds) * 1e6)
                    checksum += out.bone[channels / 2].isFinite ? out.bone[channels / 2] : 0
                    pixels += channels
                }
                elapsed = (clock.now - start).seconds
            } while elapsed < seconds
            latencies.sort()
            // The first stage alone, for where the time goes.
            let attStart = clock.now
            var attPixels = 0
            var attenuated: [AttenuationLine] = []
            for _ in 0..<20 { for line in input { attenuated.append(try prepared.process(line)); attPixels += channels }; attenuated.removeAll(keepingCapacity: true) }
            let attRate = Double(attPixels) / (clock.now - attStart).seconds
            let once = try input.map { try prepared.process($0) }
            let decStart = clock.now
            var decPixels = 0
            for _ in 0..<20 {
                var memory: TissueMemory? = TissueMemory(channels: channels)
                for a in once { checksum += decomposer.decompose(a, memory: &memory).soft[0].isFinite ? 0 : 1; decPixels += channels }
            }
            let decRate = Double(decPixels) / (clock.now - decStart).seconds
            print(String(format: "stages alone: attenuation %.1f M pixels/s, decomposition %.1f M pixels/s", attRate / 1e6, decRate / 1e6))
            // Every output bit of one pass, so that a faster decomposition can show it computes the
            // same numbers (a change of the arithmetic shows as another digest).
            var memory: TissueMemory? = TissueMemory(channels: channels)
            var digest = Digest()
            for a in once { digest.add(decomposer.decompose(a, memory: &memory)) }
            print("output digest \(digest.hex) (bone, soft tissue, fat fraction, bone mask and flags of \(once.count) lines)")
            // The memory limit on this core: the same input bytes (two 16-bit samples a pixel, the
            // 380 lines in turn) copied plainly to another buffer, as pixels per second.
            let copyRate = copyLimit(input, seconds: min(1, seconds))
            let p50 = latencies[latencies.count / 2], p99 = latencies[min(latencies.count - 1, latencies.count * 99 / 100)]
            let rate = Double(pixels) / elapsed
            print(String(format: "plain copy of the same samples on this core: %.0f M pixels/s; the decomposition is %.2f %% of it",
                         copyRate / 1e6, rate / copyRate * 100))
            print("decompose: \(channels)-channel lines (attenuation + classification + calibration), one core, \(input.count) distinct lines")
            print(String(format: "%.1f million pixels/s, %.0f lines/s; per line p50 %.1f µs, p99 %.1f µs (checksum %.3f)",
                         rate / 1e6, rate / Double(channels), p50, p99, checksum))
            print("{\"pixels_per_s\": \(Int(rate)), \"copy_pixels_per_s\": \(Int(copyRate)), \"ratio_to_copy\": \(String(format: "%.4f", rate / copyRate)), \"line_p50_us\": \(String(format: "%.1f", p50)), \"line_p99_us\": \(String(format: "%.1f", p99))}")
        } catch {
            FileHandle.standardError.write(Data("dexa-bench decompose: \(error)\n".utf8))
            exit(1)
        }
    }
}

/// FNV-1a over the bit patterns of decomposed lines.
struct Digest {
    private var h: UInt64 = 0xcbf2_9ce4_8422_2325
    var hex: String { String(h, radix: 16) }
    mutating func add(_ bits: UInt64) {
        for k in 0..<8 { h = (h ^ ((bits >> (8 * UInt64(k))) & 0xff)) &* 0x100_0000_01b3 }
    }
    mutating func add(_ line: DecomposedLine) {
        for plane in [line.bone, line.soft, line.fatFraction] { for x in plane { add(x.bitPattern) } }
        for c in line.isBone.indices { add(UInt64(line.isBone[c] ? 1 : 0) | UInt64(line.flags[c].rawValue) << 8) }
    }
}
