@testable import DXDecomposition
import DXProtocol
import Foundation
import Testing
@testable import DXSimulator

/// The reference rules select by noise where the noise is large (docs/physics.md, "Noise that
/// the rules select"): tissue whose noise went up is called bone, and pure lean tissue whose
/// noise went lean is set aside by the lean rule; left out of the references, both biased them
/// towards the tissue whose noise went the other way, and bone read high under thick lean
/// tissue. Decomposed in order with the scan's memory, a pixel the previous line did not also
/// set aside stays a reference; decomposed line by line alone (no memory, as before), the bias
/// is there to compare.
@Suite("Noise that the rules select")
struct NoiseSelectionTests {
    @Test func thickLeanTissueIsNotBiasedByTheRules() throws {
        var s = Scanner(seed: 4)
        let (stage, cal) = try s.calibrate()
        let phantom = spinePhantom(lean: 30, fatLeft: 0, fatRight: 0)
        // 300 ms at 1 mA per 0.5 mm line: the thick mode's 2.5 times the standard exposure.
        let lines = s.scan(PhantomScene(phantom), y0: 505_000, y1: 695_000, stepUm: 500, periodUs: 300_000, currentUA: 1000)
        let prepared = stage.prepared(periodUs: 300_000, currentUA: 1000, calibration: cal)
        let decomposer = Decomposer(calibration: cal)
        var withMemory = (phantom.rois ?? []).map { ROIAccumulator(roi: $0, geometry: s.geometry) }, alone = withMemory
        var memory: TissueMemory? = TissueMemory(channels: s.geometry.channels)
        var tissue = (with: [Double](), alone: [Double]())
        for l in lines {
            let a = try prepared.process(l)
            let d = decomposer.decompose(a, memory: &memory), e = decomposer.decompose(a)
            for k in withMemory.indices { withMemory[k].add(d); alone[k].add(e) }
            // Tissue away from the vertebrae (they span 185–215 mm: channels 57–86).
            for c in Array(20..<50) + Array(94..<124) {
                if d.bone[c].isFinite { tissue.with.append(d.bone[c]) }
                if e.bone[c].isFinite { tissue.alone.append(e.bone[c]) }
            }
        }
        func errors(_ rois: [ROIAccumulator]) -> [Double] { rois.map { ($0.result.bmdGcm2 - HonestResultTests.nominal[$0.result.name, default: .nan]) / HonestResultTests.nominal[$0.result.name, default: .nan] } }
        let e = errors(withMemory), before = errors(alone)
        let mean = (with: tissue.with.reduce(0, +) / Double(tissue.with.count), alone: tissue.alone.reduce(0, +) / Double(tissue.alone.count))
        print(String(format: "lean 30 at 2.5 times: with the scan's memory L1 %+.2f %%, L2 %+.2f %%, L3 %+.2f %%, tissue %+.4f g/cm²; line by line alone L1 %+.2f %%, L2 %+.2f %%, L3 %+.2f %%, tissue %+.4f g/cm²",
                     e[0] * 100, e[1] * 100, e[2] * 100, mean.with, before[0] * 100, before[1] * 100, before[2] * 100, mean.alone))
        // Measured (seed 4): +0.74 / +1.40 / +1.21 % and +0.0086 g/cm² against +2.15 / +2.14 /
        // +1.81 % and +0.0177: the bias halved, not gone (the pixels called bone are still
        // those whose noise went up, measured against unbiased tissue).
        #expect(e.count == 3 && before.count == 3)
        #expect(zip(e, before).allSatisfy { $0 < $1 }, "with memory \(e), alone \(before)")
        let meanError: Double = e.reduce(0, +) / 3, meanBefore: Double = before.reduce(0, +) / 3
        #expect(meanError < meanBefore - 0.005, "with memory \(e), alone \(before)")
        #expect(mean.with < 0.7 * mean.alone && mean.with > -0.005, "tissue \(mean)")
        #expect(e.allSatisfy { abs($0) < 0.02 }, "\(e)")
    }

    /// Bone is confirmed by the previous line's at the same channel or within a channel per
    /// pitch of distance (an edge at 45°), within 3 mm; without such a line (the first, or after
    /// more than 3 mm of lost lines) all of it is.
    @Test func theBoneThePreviousLineConfirms() {
        var m = TissueMemory(channels: 12)
        let covered: [Bool] = (0..<12).map { [3, 4, 5, 6, 10].contains($0) }
        var confirmed = [Bool](repeating: false, count: 12)
        func run(_ y: Int32) -> [Int] {
            covered.withUnsafeBufferPointer { c in confirmed.withUnsafeMutableBufferPointer { out in
                // Both buffers hold 12 elements.
                if let cb = c.baseAddress, let ob = out.baseAddress { m.confirm(cb, 12, yUm: y, pitchUm: 1000, into: ob) }
            } }
            return (0..<12).filter { confirmed[$0] }
        }
        #expect(run(1_000) == [3, 4, 5, 6, 10], "no previous line: all of it")
        m.bone = (0..<12).map { $0 == 5 }
        m.boneYUm = 1_000
        #expect(run(2_000) == [4, 5, 6])
        #expect(run(2_500) == [3, 4, 5, 6], "1.5 mm away: two channels")
        #expect(run(4_000) == [3, 4, 5, 6], "3 mm away: three channels")
        #expect(run(4_001) == [3, 4, 5, 6, 10], "beyond 3 mm: all of it")
        #expect(run(0) == [4, 5, 6], "lines in either direction")
    }
}
