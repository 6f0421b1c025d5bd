@testable import DXDecomposition
import Foundation
import DXProtocol
@testable import DXSimulator
import Testing

/// The soft-tissue reference carried under a run of bone, on hand-made lines (no physics
/// beyond the calibration's bone model, which judges whether a reference reads as bone).
@Suite("Soft tissue under a long run")
struct SoftTissueReferenceTests {
    /// A line of `n` channels: tissue of ratio 1.45 at attenuation 3.0 on either side of a run of
    /// bone over `run`; the carried reference per channel, with `memory` as the earlier lines saw.
    static func carried(_ decomposer: Decomposer, n: Int = 200, run: ClosedRange<Int>, memory: TissueMemory?,
                        tissueAt: (Int) -> (ratio: Double, high: Double) = { _ in (1.45, 3.0) }) -> [Double] {
        carriedWithHigh(decomposer, n: n, run: run, memory: memory, tissueAt: tissueAt).ratio
    }

    /// The same, with the high-window attenuation carried beside the ratio (what the thickness
    /// correction moves the ratio from).
    static func carriedWithHigh(_ decomposer: Decomposer, n: Int = 200, run: ClosedRange<Int>, memory: TissueMemory?,
                                tissueAt: (Int) -> (ratio: Double, high: Double)) -> (ratio: [Double], high: [Double]) {
        var ratio = (0..<n).map { tissueAt($0).ratio }, high = (0..<n).map { tissueAt($0).high }
        var tissue = [Bool](repeating: true, count: n), isBone = [Bool](repeating: false, count: n)
        for c in run { isBone[c] = true; tissue[c] = false; ratio[c] = 1.6; high[c] = 4.5 }
        var soft = ratio, sideHigh = [Double](repeating: .nan, count: n), rejected = [Bool](repeating: false, count: n)
        ratio.withUnsafeBufferPointer { r in high.withUnsafeBufferPointer { h in tissue.withUnsafeBufferPointer { t in
            isBone.withUnsafeBufferPointer { b in soft.withUnsafeMutableBufferPointer { s in sideHigh.withUnsafeMutableBufferPointer { sh in
                rejected.withUnsafeMutableBufferPointer { rj in
                    decomposer.carrySoftTissueRatio(ratio: r.baseAddress!, high: h.baseAddress!, tissue: t.baseAddress!, anyTissue: t.baseAddress!,
                                                    isBone: b.baseAddress!, n, into: s.baseAddress!, sideHigh: sh.baseAddress!,
                                                    rejected: rj.baseAddress!, memory: memory, yUm: 900_000)
                } } } } } } }
        return (soft, sideHigh)
    }

    static func memory(n: Int = 200, over channels: ClosedRange<Int>, ratio: Double, high: Double, yUm: Int32) -> TissueMemory {
        var m = TissueMemory(channels: n)
        for c in channels { m.ratio[c] = ratio; m.high[c] = high; m.yUm[c] = yUm }
        return m
    }

    /// A run of 160 channels (longer than four reference windows of 16) over which the earlier
    /// lines saw leaner or thicker tissue (ratio 1.40) in its middle: the reference there is
    /// that tissue, not the straight line between the run's ends (1.45). A short run, or memory
    /// older than 25 mm, leaves the straight line.
    @Test func aLongRunIsAnchoredOnTheTissueSeenOverIt() throws {
        var s = Scanner(seed: 5)
        let (_, cal) = try s.calibrate()
        let d = Decomposer(calibration: cal)
        let remembered = Self.memory(over: 80...120, ratio: 1.40, high: 3.2, yUm: 890_000)
        let long = Self.carried(d, run: 20...179, memory: remembered)
        #expect(abs(long[100] - 1.40) < 1e-9, "\(long[100])")
        // Between the anchors and the run's ends, straight: from 1.45 (the left window's, at its
        // mean channel 9.5) to
        // the first anchor (1.40 at channel 84, the first window holding enough memory).
        #expect(long[50] > 1.40 && long[50] < 1.45)
        let stale = Self.carried(d, run: 20...179, memory: Self.memory(over: 80...120, ratio: 1.40, high: 3.2, yUm: 860_000))
        #expect(abs(stale[100] - 1.45) < 1e-9, "memory 40 mm away is no anchor: \(stale[100])")
        let short = Self.carried(d, run: 80...139, memory: remembered)
        #expect(abs(short[100] - 1.45) < 1e-9, "a run of 60 channels keeps its straight line: \(short[100])")
    }

    /// Tissue whose thickness changes across the field: the ESP's lean 15 g/cm² under fat that
    /// rises 0 → 6 g/cm² over 120 mm, and tissue of fixed composition thickening 18 → 32 g/cm²,
    /// scanned without bone through the first model (380 lines averaged per channel, so that
    /// the photon noise is small beside what is measured): the reference carried under a run of
    /// bone across the field's middle is the tissue's own ratio. Until 2026-12-07 the sides' mean
    /// ratios were placed at the run's edges (their windows' means lie 10 channels beyond) and
    /// joined straight: the reference ran steeper than the tissue and stood above its curved
    /// ratio (the ESP under a fat gradient read 0.004–0.009 g/cm² low; docs/physics.md, "The
    /// references at their places").
    @Test func theReferenceFollowsTissueThatChangesAcrossTheField() throws {
        var s = Scanner(seed: 5)
        let (stage, cal) = try s.calibrate()
        let d = Decomposer(calibration: cal)
        let fast = cal.fastBoneModel
        let gradient = Phantom(name: "fat across", cells: (spinePhantom(lean: 15, fatLeft: 0, fatRight: 6).cells ?? []).filter { $0.hydroxyapatite == 0 }, rois: nil)
        let scenes: [(String, any Scene)] = [("fat 0 → 6", PhantomScene(gradient)), ("thickening", ThickeningTissueScene(bone: 0))]
        for (label, scene) in scenes {
            let prepared = stage.prepared(periodUs: 40_000, currentUA: 3000, calibration: cal)
            var u = [Double](repeating: 0, count: 144), v = u
            let lines = s.scan(scene, y0: 505_000, y1: 695_000, stepUm: 500, periodUs: 40_000, currentUA: 3000)
            for line in lines {
                let a = try prepared.process(line)
                for c in 0..<144 { u[c] += a.low[c] / Double(lines.count); v[c] += a.high[c] / Double(lines.count) }
            }
            #expect((20...124).allSatisfy { u[$0].isFinite && v[$0].isFinite }, "\(label): a channel without a number")
            let run = 55...88
            let (soft, sideHigh) = Self.carriedWithHigh(d, n: 144, run: run, memory: nil) { (u[$0] / v[$0], v[$0]) }
            // In bone mineral, at the tissue's own attenuations, with the thickness correction the
            // decomposer applies to every pixel under bone: what a vertebra there reads wrong.
            let errors = run.map { fast.bone(u[$0], v[$0], d.thicknessCorrected(ratio: soft[$0], sideHigh: sideHigh[$0], u: u[$0], v: v[$0])) }
            let mean = errors.reduce(0, +) / Double(errors.count)
            // The old rule, for scale: the windows' mean ratios joined straight from the run's edges.
            func windowMean(_ r: Range<Int>) -> Double { r.map { u[$0] / v[$0] }.reduce(0, +) / Double(r.count) }
            let left = windowMean(37..<53), right = windowMean(91..<107)
            let leftHigh = (37..<53).map { v[$0] }.reduce(0, +) / 16, rightHigh = (91..<107).map { v[$0] }.reduce(0, +) / 16
            let old = run.map { k in
                let t = Double(k - run.lowerBound + 1) / Double(run.count + 1)
                return fast.bone(u[k], v[k], d.thicknessCorrected(ratio: left + (right - left) * t, sideHigh: leftHigh + (rightHigh - leftHigh) * t, u: u[k], v: v[k]))
            }
            let oldMean = old.reduce(0, +) / Double(old.count)
            print(String(format: "%@: tissue under the run reads %+.4f g/cm² of bone (the old rule %+.4f)", label, mean, oldMean))
            // At fixed composition −0.0020 g/cm² is left, not yet explained (the tissue here is
            // 21.7–28.4 g/cm², inside the calibration phantom's range; docs/physics.md): held to
            // 0.0025, where the old rule reads −0.0045.
            #expect(abs(mean) <= (label == "thickening" ? 0.0025 : 0.0015), "\(label): \(mean)")
            #expect(abs(mean) < abs(oldMean), "\(label): \(mean) against the old rule's \(oldMean)")
        }
    }

    /// `between` on made-up sides: each side's own ratio at its place, the sides' ratio beyond
    /// them (no extrapolation), continuous in between, and the ratios' straight line where a side
    /// has no tissue in the fat model's terms.
    @Test func betweenTheSides() throws {
        var s = Scanner(seed: 5)
        let (_, cal) = try s.calibrate()
        let d = Decomposer(calibration: cal)
        let left = SideReference(ratio: 1.46, high: 3.2, at: 40.5), right = SideReference(ratio: 1.42, high: 3.8, at: 90.5)
        let tissues = (d.tissue(of: left), d.tissue(of: right))
        #expect(tissues.0 != nil && tissues.1 != nil)
        for (x, expected) in [(40.5, 1.46), (90.5, 1.42), (10.0, 1.46), (120.0, 1.42)] {
            let ratio = try #require(d.between(left, right, at: x)).ratio
            #expect(abs(ratio - expected) < 1e-6, "at \(x): \(ratio)")
        }
        var previous = 1.46
        for k in 41...90 {
            let ratio = try #require(d.between(left, right, at: Double(k))).ratio
            #expect(ratio < previous + 1e-12 && previous - ratio < 0.002, "at \(k): \(ratio) after \(previous)")
            previous = ratio
        }
        // No tissue in the model's terms (a ratio no tissue has): the straight line.
        let odd = SideReference(ratio: 40, high: 3.2, at: 40.5)
        #expect(d.tissue(of: odd) == nil)
        let straight = try #require(d.between(odd, right, at: 65.5)).ratio
        #expect(abs(straight - (40 + 1.42) / 2) < 1e-9)
        #expect(d.between(nil, right, at: 3)?.ratio == 1.42 && d.between(nil, nil, at: 3) == nil)
    }

    /// Remembered tissue that reads as bone against the straight line (faint bone an earlier line
    /// took for tissue) is no anchor.
    @Test func rememberedBoneIsNoAnchor() throws {
        var s = Scanner(seed: 5)
        let (_, cal) = try s.calibrate()
        let d = Decomposer(calibration: cal)
        let bony = Self.carried(d, run: 20...179, memory: Self.memory(over: 80...120, ratio: 1.60, high: 3.2, yUm: 890_000))
        #expect(abs(bony[100] - 1.45) < 1e-9, "\(bony[100])")
    }
}

/// The tissue a scan's lines remember (`TissueMemory`) is averaged over about 4 mm of lines, not
/// one line's pixels: a long run anchored on it read that line's photon noise in every row after
/// (docs/physics.md, "The memory averaged").
@Suite("The memory averaged")
struct TissueMemoryAveragingTests {
    @Test func theWeightIsTheDistanceOverFourMillimetres() {
        #expect(TissueMemory.weight(ofLineAt: 1_000, after: 0) == 0.25)
        #expect(TissueMemory.weight(ofLineAt: 0, after: 500) == 0.125)
        #expect(TissueMemory.weight(ofLineAt: 10_000, after: 6_000) == 1)
        #expect(TissueMemory.weight(ofLineAt: 50_000, after: 0) == 1)
    }

    /// Uniform lean tissue, 40 lines of 1 mm: what the memory holds at each channel scatters
    /// across the channels as an exponential mean of the lines does (a quarter weight: variance
    /// w/(2 − w) = 1/7 of one line's, SD 0.38 of it), not as one line's pixels (SD 1).
    @Test func theMemoryHoldsLessNoiseThanALine() throws {
        var s = Scanner(seed: 7)
        let (stage, cal) = try s.calibrate()
        let slab = Phantom(name: "slab", cells: [Phantom.Cell(xUm: [100_000, 300_000], yUm: [500_000, 700_000], hydroxyapatite: 0, lean: 25, fat: 3)], rois: nil)
        let prepared = stage.prepared(periodUs: 40_000, currentUA: 3000, calibration: cal)
        let lines = s.scan(PhantomScene(slab), y0: 505_000, y1: 545_000, stepUm: 1000, periodUs: 40_000, currentUA: 3000)
        let d = Decomposer(calibration: cal)
        var memory: TissueMemory? = TissueMemory(channels: 144)
        var last: AttenuationLine?
        for l in lines {
            let a = try prepared.process(l)
            _ = d.decompose(a, memory: &memory)
            last = a
        }
        let m = try #require(memory), a = try #require(last)
        func sd(_ x: [Double]) -> Double { let mean = x.reduce(0, +) / Double(x.count); return (x.map { ($0 - mean) * ($0 - mean) }.reduce(0, +) / Double(x.count - 1)).squareRoot() }
        let channels = 40..<104
        let remembered = sd(channels.map { m.ratio[$0] }), oneLine = sd(channels.map { a.low[$0] / a.high[$0] })
        print(String(format: "memory's ratio SD %.5f, one line's %.5f (%.2f of it)", remembered, oneLine, remembered / oneLine))
        // (A channel the last line set aside as bone keeps what it held before.)
        #expect(channels.allSatisfy { m.ratio[$0].isFinite } && channels.filter { m.yUm[$0] == a.yUm }.count >= 58)
        #expect(remembered / oneLine > 0.25 && remembered / oneLine < 0.5)
    }
}
