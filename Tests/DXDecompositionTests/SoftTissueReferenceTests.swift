@testable import DXDecomposition
import Foundation
import Testing

/// The soft-tissue reference carried under a run of bone, on hand-made lines (no physics
/// beyond the calibration's bone model, which judges whether a reference reads as bone).
@Suite("Soft tissue under a long run")
struct SoftTissueReferenceTests {
    /// A line of `n` channels: tissue of ratio 1.45 at attenuation 3.0 on either side of a run of
    /// bone over `run`; the carried reference per channel, with `memory` as the earlier lines saw.
    static func carried(_ decomposer: Decomposer, n: Int = 200, run: ClosedRange<Int>, memory: TissueMemory?) -> [Double] {
        var ratio = [Double](repeating: 1.45, count: n), high = [Double](repeating: 3.0, count: n)
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
        return soft
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
        // Between the anchors and the run's ends, straight: halfway from 1.45 at channel 19 to
        // the first anchor (1.40 at channel 84, the first window holding enough memory).
        #expect(long[50] > 1.40 && long[50] < 1.45)
        let stale = Self.carried(d, run: 20...179, memory: Self.memory(over: 80...120, ratio: 1.40, high: 3.2, yUm: 860_000))
        #expect(abs(stale[100] - 1.45) < 1e-9, "memory 40 mm away is no anchor: \(stale[100])")
        let short = Self.carried(d, run: 80...139, memory: remembered)
        #expect(abs(short[100] - 1.45) < 1e-9, "a run of 60 channels keeps its straight line: \(short[100])")
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
