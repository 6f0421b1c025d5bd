@testable import DXDecomposition
import DXProtocol
import Foundation
import Testing
@testable import DXSimulator

/// Issue 18: the fast paths of the attenuation stage and the decomposer give the scalar
/// reference's numbers to the last bit (ScalarReference.swift), on every kind of scene the
/// product meets: the calibration phantom's cells, the ESP and bench phantoms, fat across the
/// field, patients' spines and hips (with the tissue memory carried line to line), the lateral
/// view, thick tissue at a short exposure (photon-starved pixels), lines of random counts (every
/// flag), both physics models, the second with its rate loss and scatter corrected (the stage's
/// general branch), and the transmissions kept. One flipped pixel moves runs, references and
/// ROIs, so nothing on the decision path may differ at all (docs/PERFORMANCE.md).
@Suite("Fast paths equal the scalar reference")
struct FastPathEquivalenceTests {
    struct Outcome {
        var lines = 0, pixels = 0, boneAny = 0
        var problems: [String] = []
    }

    static func sameBits(_ a: [Double], _ b: [Double]) -> Bool {
        a.count == b.count && zip(a, b).allSatisfy { $0.bitPattern == $1.bitPattern }
    }

    /// The first differing element, for the message.
    static func firstDifference(_ a: [Double], _ b: [Double]) -> String {
        guard a.count == b.count else { return "\(a.count) against \(b.count) values" }
        guard let i = zip(a, b).enumerated().first(where: { $0.element.0.bitPattern != $0.element.1.bitPattern })?.offset else { return "equal" }
        return "channel \(i): \(a[i]) against \(b[i])"
    }

    /// Every line through both paths, the memory carried through each on its own.
    static func compare(_ lines: [ScanLine], prepared: PreparedAttenuation, decomposer: Decomposer, memory useMemory: Bool,
                        into outcome: inout Outcome, scene: String) {
        let n = prepared.channels
        var referenceMemory: TissueMemory? = useMemory ? TissueMemory(channels: n) : nil
        var fastMemory = referenceMemory
        for line in lines {
            outcome.lines += 1
            func problem(_ what: String) { if outcome.problems.count < 12 { outcome.problems.append("\(scene), line \(line.index): \(what)") } }
            let reference: AttenuationLine, fast: AttenuationLine
            do {
                reference = try prepared.processReference(line)
                fast = try prepared.process(line)
            } catch {
                problem("\(error)")
                continue
            }
            for (name, r, f) in [("low", reference.low, fast.low), ("high", reference.high, fast.high),
                                 ("varianceLow", reference.varianceLow, fast.varianceLow), ("varianceHigh", reference.varianceHigh, fast.varianceHigh),
                                 ("transmissionLow", reference.transmissionLow, fast.transmissionLow),
                                 ("transmissionHigh", reference.transmissionHigh, fast.transmissionHigh),
                                 ("transmissionVarianceLow", reference.transmissionVarianceLow, fast.transmissionVarianceLow),
                                 ("transmissionVarianceHigh", reference.transmissionVarianceHigh, fast.transmissionVarianceHigh)]
                where !sameBits(r, f) { problem("attenuation \(name): \(firstDifference(r, f))") }
            if reference.flags != fast.flags { problem("attenuation flags differ") }
            // The covariance where the pixel has a number (the plain path carries none: 0).
            let covariances = [reference, fast].map { l in (0..<n).map { l.low[$0].isNaN ? Double.nan : l.covariance(at: $0) } }
            if !sameBits(covariances[0], covariances[1]) { problem("attenuation covariance: \(firstDifference(covariances[0], covariances[1]))") }
            if reference.exposure.bitPattern != fast.exposure.bitPattern || reference.index != fast.index || reference.yUm != fast.yUm {
                problem("attenuation line fields differ")
            }
            let r = decomposer.decomposeReference(reference, memory: &referenceMemory)
            let f = decomposer.decompose(reference, memory: &fastMemory)
            outcome.pixels += n
            outcome.boneAny += r.isBone.filter { $0 }.count
            for (name, a, b) in [("bone", r.bone, f.bone), ("soft", r.soft, f.soft), ("fatFraction", r.fatFraction, f.fatFraction)]
                where !sameBits(a, b) { problem("\(name): \(firstDifference(a, b))") }
            if r.isBone != f.isBone { problem("isBone: \(zip(r.isBone, f.isBone).filter { $0 != $1 }.count) pixels differ") }
            if r.flags != f.flags { problem("flags differ") }
            if let rm = referenceMemory, let fm = fastMemory {
                if !sameBits(rm.ratio, fm.ratio) || !sameBits(rm.high, fm.high) || rm.yUm != fm.yUm || rm.sampledYUm != fm.sampledYUm { problem("the tissue memory differs") }
                if rm.bone != fm.bone || rm.lean != fm.lean || rm.boneYUm != fm.boneYUm { problem("the previous line's bone or lean rule differs") }
            }
        }
    }

    static func check(_ outcome: Outcome, _ what: String) {
        print("\(what): \(outcome.lines) lines, \(outcome.pixels) pixels (\(outcome.boneAny) bone) through both paths, \(outcome.problems.count) differences")
        #expect(outcome.lines > 0 && outcome.pixels > 0)
        #expect(outcome.problems.isEmpty, "\(outcome.problems.joined(separator: "\n"))")
    }

    /// Lines of random counts: zeros, full scale, below the dark level, a few photons; some with
    /// the beam off. Every flag and every branch of the stage.
    static func randomLines(channels: Int, count: Int, seed: UInt64) -> [ScanLine] {
        var rng = SplitMix64(seed: seed)
        return (0..<count).map { i in
            let samples: [UInt16] = (0..<(2 * channels)).map { _ in
                switch rng.next() % 8 {
                case 0: 0
                case 1: 65535
                case 2: UInt16(rng.next() % 300)
                case 3: UInt16(200 + rng.next() % 100)
                default: UInt16(rng.next() % 65536)
                }
            }
            return ScanLine(index: UInt32(i), yUm: Int32(i) * 1000, xUm: 200_000, tUs: UInt64(i) * 40_000, flags: i % 5 == 4 ? [] : [.xrayOn], samples: samples)
        }
    }

    /// The tissue ratio's roots without an array: the same answers over the fat model's range
    /// and far beyond it (no root, one, the other). The scenes' reference shares the new one
    /// (through the thickness correction under bone), so it is held to the old one here.
    static func sameTissueRatios(_ calibration: Calibration) {
        let fast = calibration.fastBoneModel
        var rng = SplitMix64(seed: 3)
        var answered = 0, differing = 0
        for _ in 0..<20_000 {
            let v = 100 * Double(rng.next() >> 11) * 0x1p-53 - 50, fat = 40 * Double(rng.next() >> 11) * 0x1p-53 - 20
            let new = fast.tissueRatio(highAttenuation: v, fat: fat), old = fast.tissueRatioReference(highAttenuation: v, fat: fat)
            if new?.bitPattern != old?.bitPattern { differing += 1 }
            if new != nil { answered += 1 }
        }
        #expect(differing == 0)
        #expect(answered > 1000 && answered < 20_000, "\(answered) of 20,000 answered: both branches of the roots are to be tried")
    }

    /// One calibrated detector's scenes; `plain`: whether its calibration lets the stage take
    /// its fast path (no dead time, no scatter), which the comparison is then about.
    static func scenes(_ s: inout Scanner, stage: AttenuationStage, calibration: Calibration, label: String, patients: ClosedRange<UInt64>,
                       plain: Bool) -> Outcome {
        var outcome = Outcome()
        sameTissueRatios(calibration)
        let decomposer = Decomposer(calibration: calibration)
        let standard = stage.prepared(periodUs: 40_000, currentUA: 3000, calibration: calibration)
        #expect((standard.deadTimeFraction == 0 && standard.scatterKernel.isEmpty && standard.mixing == 0 && standard.crossLow.isEmpty
                  && standard.squareLow.isEmpty) == plain,
                "\(label): the stage's path is not the one this test is about")
        let kept = stage.prepared(periodUs: 40_000, currentUA: 3000, calibration: calibration, transmissions: true)
        let short = stage.prepared(periodUs: 10_000, currentUA: 1000, calibration: calibration)
        for (name, phantom) in [("esp", StandardPhantoms.esp), ("bench", StandardPhantoms.bench), ("fat 0→6", spinePhantom(lean: 20, fatLeft: 0, fatRight: 6)),
                                ("calibration", StandardPhantoms.calibration)] {
            let lines = s.scan(PhantomScene(phantom), y0: 505_000, y1: 695_000, stepUm: 2000, periodUs: 40_000, currentUA: 3000)
            compare(lines, prepared: standard, decomposer: decomposer, memory: false, into: &outcome, scene: "\(label) \(name)")
            compare(Array(lines.prefix(20)), prepared: kept, decomposer: decomposer, memory: false, into: &outcome, scene: "\(label) \(name), transmissions kept")
        }
        // Thick tissue at a tenth of the exposure: photon-starved and below-dark pixels.
        // (1 mm apart: the rules that look at the previous line take one within 3 mm.)
        let thick = s.scan(PhantomScene(spinePhantom(lean: 30, fatLeft: 6, fatRight: 9)), y0: 505_000, y1: 695_000, stepUm: 1000, periodUs: 10_000, currentUA: 1000)
        compare(thick, prepared: short, decomposer: decomposer, memory: true, into: &outcome, scene: "\(label) thick, short exposure")
        compare(randomLines(channels: 144, count: 40, seed: 7), prepared: standard, decomposer: decomposer, memory: true, into: &outcome, scene: "\(label) random counts")
        for seed in patients {
            let spec = PatientVariety.patient(seed: seed)
            let scene = PatientScene(spec)
            let spine = s.scan(scene, y0: 560_000, y1: 780_000, stepUm: 2000, periodUs: 40_000, currentUA: 3000)
            compare(spine, prepared: standard, decomposer: decomposer, memory: true, into: &outcome, scene: "\(label) patient \(seed) AP spine")
            for hip in spec.hips.prefix(1) {
                var shifted = spec
                shifted.midlineMM = hip.side == .left ? 200 - hip.headOffsetMM - 20 : 200 + hip.headOffsetMM + 20
                let lines = s.scan(PatientScene(shifted), y0: Int32(hip.headYMM - 40) * 1000, y1: Int32(hip.headYMM + 100) * 1000, stepUm: 2000,
                                   periodUs: 40_000, currentUA: 3000)
                compare(lines, prepared: standard, decomposer: decomposer, memory: true, into: &outcome, scene: "\(label) patient \(seed) \(hip.side) hip")
            }
            let lateral = s.scan(scene.projection(armAngleX10: 900), y0: 420_000, y1: 800_000, stepUm: 2000, periodUs: 40_000, currentUA: 3000)
            compare(lateral, prepared: standard, decomposer: decomposer, memory: true, into: &outcome, scene: "\(label) patient \(seed) lateral")
        }
        return outcome
    }

    @Test func theFirstPhysicsModel() throws {
        var s = Scanner(seed: 8)
        let (stage, calibration) = try s.calibrate()
        Self.check(Self.scenes(&s, stage: stage, calibration: calibration, label: "kramers", patients: 1...3, plain: true), "first physics model")
    }

    /// The second model with every effect on: its calibration carries a dead time and a
    /// scatter kernel, so the stage takes its general branch.
    @Test func theSecondPhysicsModelWithRateLossAndScatter() throws {
        var s = Scanner.cdte(seed: 64)
        let (stage, calibration) = try s.calibrate()
        #expect((calibration.deadTimeUs ?? 0) > 0 && calibration.scatter != nil, "the second model's calibration corrects rate loss and scatter")
        // And maps each channel's low window with a cross term and a square (2026-12-07), so
        // that the square's branch is compared too.
        #expect(calibration.channelResponse?.lowCross != nil && calibration.channelResponse?.lowSquare != nil,
                "the second model's calibration has no square: the square's branch is not compared")
        Self.check(Self.scenes(&s, stage: stage, calibration: calibration, label: "cdte", patients: 4...4, plain: false), "second physics model")
    }
}

@Suite("The branch-free logarithm")
struct BranchFreeLogTests {
    /// The same bits as the integer-exponent version over every count a pixel can hold and
    /// beyond (0.5 to 10⁹, and every value where the mantissa's halving changes), and no trap
    /// on what a select later discards.
    @Test func theSameBitsAsBefore() {
        var x = 1e-3, differing = 0, checked = 0
        while x < 1e9 {
            for y in [x, x.nextUp, x.nextDown] {
                checked += 1
                if FastLog.ln(y).bitPattern != FastLogReference.ln(y).bitPattern { differing += 1 }
            }
            x *= 1.000_61
        }
        for k in -30...30 {
            let edge = 1.4142135623730951 * Foundation.pow(2, Double(k))
            for y in [edge, edge.nextUp, edge.nextDown] where FastLog.ln(y).bitPattern != FastLogReference.ln(y).bitPattern { differing += 1 }
        }
        for c in 1...65_535 where FastLog.ln(Double(c)).bitPattern != FastLogReference.ln(Double(c)).bitPattern { differing += 1 }
        // Zero, negative, NaN, infinite and subnormal inputs (a select later discards their
        // values): the same bits as before too.
        for y in [0.0, -0.0, -1.0, -1e300, .nan, .infinity, -.infinity, 5e-324, 2.2e-308] where FastLog.ln(y).bitPattern != FastLogReference.ln(y).bitPattern {
            differing += 1
        }
        #expect(checked > 100_000)
        #expect(differing == 0)
    }
}

/// The calibration's polynomials four pixels at a time (`FastBoneModelLanes`) give the scalar
/// functions' bits in every lane (a NaN for a NaN, whatever its sign), for values a line holds
/// and far beyond them: NaN, infinities,
/// zeros of either sign, negative variances, and both of the fat model's forms (a quadratic in
/// the ratio, and without its square the linear one). The scenes above hold the decomposer that
/// uses them; this holds the functions where the scenes do not reach.
@Suite("The polynomials four pixels at a time")
struct FastBoneModelLanesTests {
    static func value(_ rng: inout SplitMix64, scale: Double) -> Double {
        switch rng.next() % 16 {
        case 0: .nan
        case 1: .infinity
        case 2: -.infinity
        case 3: 0
        case 4: -0.0
        case 5: -scale * Double(rng.next() >> 11) * 0x1p-53
        default: scale * Double(rng.next() >> 11) * 0x1p-53
        }
    }

    static func compare(_ fast: Calibration.FastBoneModel, seed: UInt64) -> (compared: Int, differing: [String], ratios: Int) {
        var rng = SplitMix64(seed: seed)
        let n = 4 * 2_000 + 3  // a tail for the scalar functions too
        func column(_ scale: Double) -> [Double] { (0..<n).map { _ in value(&rng, scale: scale) } }
        let u = column(8), v = column(6), rBone = column(2), rSoft = column(2), varU = column(0.01), varV = column(0.01), cov = column(0.005)
        let fat = column(2)
        var bone = [Double](repeating: 0, count: n), unbiased = bone, soft = bone, fatOut = bone, ratios = bone
        var signal = bone, smoothedBone = bone, sigma = bone, noise = bone
        u.withUnsafeBufferPointer { u in v.withUnsafeBufferPointer { v in rBone.withUnsafeBufferPointer { rb in rSoft.withUnsafeBufferPointer { rs in
        varU.withUnsafeBufferPointer { vu in varV.withUnsafeBufferPointer { vv in cov.withUnsafeBufferPointer { cv in fat.withUnsafeBufferPointer { ft in
            fast.evaluate(n, u: u.baseAddress!, v: v.baseAddress!, rBone: rb.baseAddress!, rSoft: rs.baseAddress!, varU: vu.baseAddress!,
                          varV: vv.baseAddress!, covUV: cv.baseAddress!, bone: &bone, unbiased: &unbiased, soft: &soft, fat: &fatOut)
            fast.tissueRatios(n, high: v.baseAddress!, fat: ft.baseAddress!, into: &ratios)
            fast.classificationReadings(n, u: u.baseAddress!, v: v.baseAddress!, r: rb.baseAddress!, varU: vu.baseAddress!, varV: vv.baseAddress!,
                                        covUV: cv.baseAddress!, rootWindow: 7.0.squareRoot(), signal: &signal, bone: &smoothedBone, sigma: &sigma)
            fast.ratioNoise(n, ratio: rb.baseAddress!, high: v.baseAddress!, varU: vu.baseAddress!, varV: vv.baseAddress!, covUV: cv.baseAddress!, into: &noise)
        } } } } } } } }
        var differing: [String] = []
        var answered = 0
        for c in 0..<n {
            func check(_ name: String, _ lane: Double, _ scalar: Double) {
                // Any NaN for a NaN: which operand's NaN an operation passes on, and its sign,
                // depend on the operands' order, and nothing reads a NaN but as "no number".
                if lane.bitPattern != scalar.bitPattern && !(lane.isNaN && scalar.isNaN) && differing.count < 10 {
                    differing.append("\(name) at \(c) (u \(u[c]), v \(v[c]), r \(rBone[c])): \(lane) against \(scalar)")
                }
            }
            check("bone", bone[c], fast.bone(u[c], v[c], rBone[c]))
            check("unbiasedBone", unbiased[c], fast.unbiasedBone(u[c], v[c], rBone[c], varU: varU[c], varV: varV[c], covUV: cov[c]))
            check("soft", soft[c], fast.soft(u[c], v[c], rSoft[c]))
            check("fatFraction", fatOut[c], fast.fatFraction(u[c], v[c]))
            let ratio = fast.tissueRatio(highAttenuation: v[c], fat: fat[c])
            if ratio != nil { answered += 1 }
            check("tissueRatio", ratios[c], ratio ?? .nan)
            let r = rBone[c], s = u[c] - r * v[c], b = fast.bone(u[c], v[c], r)
            check("signal", signal[c], s)
            check("smoothed bone", smoothedBone[c], b)
            check("sigma", sigma[c], max(0, varU[c] + r * r * varV[c] - 2 * r * cov[c]).squareRoot() * b / s / 7.0.squareRoot())
            check("ratio noise", noise[c], max(0, varU[c] + r * r * varV[c] - 2 * r * cov[c]).squareRoot() / v[c])
        }
        return (n, differing, answered)
    }

    @Test func theScalarFunctionsBitsInEveryLane() throws {
        var s = Scanner(seed: 8)
        let (_, calibration) = try s.calibrate()
        let fitted = calibration.fastBoneModel
        let (compared, differing, answered) = Self.compare(fitted, seed: 11)
        print("lanes against scalar, fitted model: \(compared) pixels, \(differing.count) differences, tissue ratio answered \(answered)")
        #expect(differing.isEmpty, "\(differing.joined(separator: "\n"))")
        #expect(answered > compared / 20, "both of the tissue ratio's branches are to be tried: \(answered) of \(compared) answered")
        // The fat model without its square term: the linear branch of the tissue ratio.
        let linear = Calibration.FastBoneModel(bone: calibration.hydroxyapatite.rawCoefficients, soft: calibration.softTissue.rawCoefficients,
                                               fat: calibration.fatFraction.rawCoefficients.enumerated().map { $0.offset == 3 ? 0 : $0.element })
        let second = Self.compare(linear, seed: 12)
        print("lanes against scalar, linear fat model: \(second.compared) pixels, \(second.differing.count) differences, tissue ratio answered \(second.ratios)")
        #expect(second.differing.isEmpty, "\(second.differing.joined(separator: "\n"))")
        #expect(second.ratios > 0)
    }

    /// `TissueMemory.dilate` says for every channel what a look at the window around it says:
    /// any true within `reach` (the window cut at the line's ends), for lines of 0–20 channels and
    /// reaches from 0 to beyond the line.
    @Test func theDilatedMaskIsTheWindowsAny() {
        var rng = SplitMix64(seed: 5)
        var checked = 0, differing = 0
        for n in 0...20 {
            for reach in 0...25 {
                for _ in 0..<8 {
                    let mask = (0..<n).map { _ in rng.next() % 5 == 0 }
                    var out = [Bool](repeating: false, count: n)
                    mask.withUnsafeBufferPointer { m in out.withUnsafeMutableBufferPointer { o in
                        if let mb = m.baseAddress, let ob = o.baseAddress { TissueMemory.dilate(mb, n, within: reach, into: ob) }
                    } }
                    for c in 0..<n {
                        checked += 1
                        if out[c] != mask[max(0, c - reach)...min(n - 1, c + reach)].contains(true) { differing += 1 }
                    }
                }
            }
        }
        #expect(checked > 10_000)
        #expect(differing == 0)
    }

    /// A line whose covariance does not match its channels (the field is public) is decomposed to
    /// no numbers, as a line with mismatched variances is: never a trap, never numbers read past
    /// its end.
    @Test func aLineWithAShortCovarianceGivesNoNumbers() throws {
        var s = Scanner(seed: 8)
        let (stage, calibration) = try s.calibrate()
        let prepared = stage.prepared(periodUs: 40_000, currentUA: 3000, calibration: calibration)
        let lines = s.scan(PhantomScene(StandardPhantoms.esp), y0: 600_000, y1: 604_000, stepUm: 2000, periodUs: 40_000, currentUA: 3000)
        var line = try prepared.process(try #require(lines.first))
        let n = line.channels
        line.covariance = [Double](repeating: 0.0001, count: n - 1)
        var memory: TissueMemory? = TissueMemory(channels: n)
        let out = Decomposer(calibration: calibration).decompose(line, memory: &memory)
        #expect(out.bone.count == n && out.bone.allSatisfy(\.isNaN) && out.soft.allSatisfy(\.isNaN))
        #expect(memory?.ratio.allSatisfy(\.isNaN) == true && memory?.boneYUm == nil, "nothing learnt from it")
        line.covariance = []
        #expect(Decomposer(calibration: calibration).decompose(line).bone.contains { $0.isFinite }, "without a covariance: numbers")
    }
}
