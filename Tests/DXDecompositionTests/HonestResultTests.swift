@testable import DXDecomposition
import DXProtocol
import Foundation
import Testing
@testable import DXSimulator

/// Results that hold up or say why not: photon-starved pixels in ROI means, lines that never
/// arrived, and one rule for accepting a calibration, under both physics models.
@Suite("Honest results")
struct HonestResultTests {
    static let nominal = ["L1": 0.5, "L2": 1.0, "L3": 1.5]

    /// A scene where 10–30 % of the densest vertebra's pixels have under 25 counts above dark
    /// in the low window: the ROI keeps them (with the low-count correction) and is unbiased;
    /// leaving them out, as the core did before, reads low.
    @Test func photonStarvedPixelsLeaveTheROIUnbiased() throws {
        var s = Scanner(seed: 61)
        let (stage, cal) = try s.calibrate()
        // The exposure that leaves the 1.5 g/cm² vertebra 28 photons per pixel (mean) in the
        // low window, from the simulator's own physics (the test knows the truth; the host does not).
        let t = DualEnergyBeam().transmission(Composition(hydroxyapatite: 1.5, lean: 15, fat: 3))
        let mAms = 28 / (KramersLinePhysics().airCountsLow * t.low)
        let current: UInt32 = 1000, period = UInt32((mAms * 1000).rounded())
        var included: [Double] = [], excluded: [Double] = [], fractions: [Double] = []
        for _ in 0..<3 {
            let lines = s.scan(PhantomScene(StandardPhantoms.esp), y0: 505_000, y1: 695_000, stepUm: 500, periodUs: period, currentUA: current)
            let prepared = stage.prepared(periodUs: period, currentUA: current, calibration: cal)
            let decomposer = Decomposer(calibration: cal)
            guard let roi = StandardPhantoms.esp.rois?.first(where: { $0.name == "L3" }) else { Issue.record("no L3"); return }
            var acc = ROIAccumulator(roi: roi, geometry: s.geometry)
            var keptSum = 0.0, kept = 0
            for l in lines {
                let d = decomposer.decompose(try prepared.process(l))
                acc.add(d)
                guard roi.yUm.count == 2, l.yUm >= roi.yUm[0], l.yUm < roi.yUm[1] else { continue }
                for c in 0..<d.bone.count where d.bone[c].isFinite && !d.flags[c].contains(.photonStarved) {
                    let x = s.geometry.x(ofChannel: c, carriageX: l.xUm)
                    if x >= Double(roi.xUm[0]) && x < Double(roi.xUm[1]) { keptSum += d.bone[c]; kept += 1 }
                }
            }
            let r = acc.result
            included.append(r.bmdGcm2)
            excluded.append(keptSum / Double(max(kept, 1)))
            fractions.append(Double(r.lowCountPixels) / Double(max(r.pixels, 1)))
            #expect(r.unmeasuredPixels == 0 && r.complete, "\(r)")
        }
        let mean = included.reduce(0, +) / 3, old = excluded.reduce(0, +) / 3
        let fraction = fractions.reduce(0, +) / 3
        print(String(format: "low counts (%.1f ms at 1 mA): %.0f %% of L3's pixels under 25 counts; ROI %.4f g/cm² (%+.2f %%), leaving them out %.4f (%+.2f %%)",
                     Double(period) / 1000, fraction * 100, mean, (mean - 1.5) / 1.5 * 100, old, (old - 1.5) / 1.5 * 100))
        #expect((0.10...0.30).contains(fraction), "the scene must starve 10–30 % of the ROI: \(fraction)")
        #expect(abs(mean - 1.5) / 1.5 <= 0.01)
        #expect(abs(old - 1.5) > abs(mean - 1.5), "leaving the starved pixels out should be the worse estimate")
    }

    /// Lines that never arrived (a lost frame, a scan cut short) are named, and the ROIs they
    /// cross say they are incomplete; the live pipeline says the same as the offline struct.
    @Test func missingLinesAreNamedAndTheirROIsFlagged() async throws {
        var s = Scanner(seed: 62)
        let (stage, cal) = try s.calibrate()
        let config = ScanConfiguration(scanID: 9, mode: .dual, xUm: 200_000, yStartUm: 505_000, lineCount: 380, lineStepUm: 500,
                                       linePeriodUs: 40_000, tubeCurrentUA: 3000, linesPerFrame: 8)
        let lines = s.scan(PhantomScene(StandardPhantoms.esp), y0: 505_000, y1: 695_000, stepUm: 500, periodUs: 40_000, currentUA: 3000)
        #expect(lines.count == 380)
        // Two frames of 8 lines lost inside L2 (y 585–615 mm: lines 160–219), and the scan
        // cut 20 lines short (outside every ROI).
        let lost = Set(176..<184).union(192..<200).union(360..<380)
        let kept = lines.filter { !lost.contains(Int($0.index)) }
        var work = ScanDecomposition(stage: stage, calibration: cal, geometry: s.geometry, rois: StandardPhantoms.esp.rois ?? [], configuration: config)
        for l in kept { try work.add(l) }
        #expect(work.ledger.missingCount == 36)
        #expect(work.ledger.missingRanges == [176...183, 192...199, 360...379])
        #expect(work.ledger.summary.contains("36 of 380 lines missing (lines 176–183, 192–199, 360–379)"), "\(work.ledger.summary)")
        let rois = Dictionary(uniqueKeysWithValues: work.roiResults.map { ($0.name, $0) })
        #expect(rois["L2"]?.missingLines == 16 && rois["L2"]?.complete == false)
        #expect(rois["L1"]?.missingLines == 0 && rois["L1"]?.complete == true)
        #expect(rois["L3"]?.complete == true)
        // The live pipeline: the same lines, the same account.
        let live = LivePipeline.start(ScanDecomposition(stage: stage, calibration: cal, geometry: s.geometry,
                                                        rois: StandardPhantoms.esp.rois ?? [], configuration: config))
        live.submit(kept)
        let result = await live.finish()
        #expect(result.missingLines == 36 && !result.complete)
        #expect(result.missingLineRanges == [[176, 183], [192, 199], [360, 379]])
        #expect(result.rois == work.roiResults)
        let json = String(decoding: try JSONEncoder().encode(result), as: UTF8.self)
        #expect(json.contains("\"missing_lines\":36") && json.contains("\"low_count_pixels\"") && json.contains("\"complete\":false"))
    }

    /// One rule for a calibration: a residual that is only photon noise passes, a wrong model
    /// fails. A phantom file whose cells are mislabelled (two bone values swapped) is the wrong
    /// model here: its fit cannot reach the cells' truth.
    @Test func theAcceptanceRuleSeparatesNoiseFromAWrongModel() throws {
        var s = Scanner(seed: 63)
        let (_, cal) = try s.calibrate()
        let good = cal.verdict
        print("calibration (kramers): \(good)")
        #expect(good.accepted, "\(good)")
        #expect(good.noise > 0 && good.noise < good.limit && good.limit >= CalibrationVerdict.modelAllowance)
        var mislabelled = cal.points
        for k in mislabelled.indices where mislabelled[k].hydroxyapatite == 0.5 && mislabelled[k].lean == 15 { mislabelled[k].hydroxyapatite = 1.0 }
        for k in mislabelled.indices where mislabelled[k].hydroxyapatite == 1.5 && mislabelled[k].lean == 15 { mislabelled[k].hydroxyapatite = 0.5 }
        var wrong = try Calibration.fit(points: mislabelled, source: "mislabelled")
        wrong.channelResponse = cal.channelResponse
        let verdict = wrong.verdict
        print("calibration (mislabelled cells): \(verdict)")
        #expect(!verdict.accepted)
        #expect(verdict.description.hasPrefix("calibration refused: the calibration fits its phantom to"))
        // Too few photons: the same cells with ten times the noise of a usable calibration.
        var noisy = cal
        for k in noisy.points.indices { noisy.points[k].varianceLow *= 400; noisy.points[k].varianceHigh *= 400 }
        noisy.residualHydroxyapatite = 0
        #expect(!noisy.verdict.accepted && noisy.verdict.description.contains("scan the phantom with more exposure"), "\(noisy.verdict)")
        // A calibration from before noise was recorded is judged by the allowance alone.
        var old = cal
        for k in old.points.indices { old.points[k].varianceLow = 0; old.points[k].varianceHigh = 0 }
        #expect(old.verdict.noise == 0 && old.verdict.limit == CalibrationVerdict.modelAllowance)
        // χ² at 99.9 % (Wilson–Hilferty) against the table: 63 degrees of freedom give 103.4.
        #expect(abs(CalibrationVerdict.chiSquareQuantile999(63) - 103.4) < 0.5)
        #expect(abs(CalibrationVerdict.chiSquareQuantile999(10) - 29.59) < 0.3)
    }

    /// Under either physics model the core is never silently wrong: either the acceptance rule
    /// takes the calibration and the ESP-like phantom reads within 1 %, or the rule refuses it.
    @Test(arguments: PhysicsModel.allCases)
    func neverSilentlyWrong(physics: PhysicsModel) throws {
        var s = Scanner(seed: 64, physics: physics)
        let (stage, cal) = try s.calibrate()
        let verdict = cal.verdict
        print("calibration (\(physics)): \(verdict); dead time \(cal.deadTimeUs ?? 0) µs, scatter \(String(describing: cal.scatter))")
        if physics == .kramers {
            #expect(verdict.accepted)
            // Sharp windows do not mix and alike channels need no cross term: nothing to
            // unmix, and the stage's fast path.
            #expect(cal.lowWindowMixing == nil)
            #expect(cal.lowWindowAirRatio == nil && cal.unmixing == nil)
            #expect(cal.channelResponse?.lowCross == nil)
        }
        // The full second model is refused while the host does not correct its pile-up and
        // scatter (docs/physics.md); when it is accepted, this pin goes and the check below
        // holds it to 1 %.
        if physics == .cdte { #expect(!verdict.accepted, "the full second model's calibration is now accepted: \(verdict)") }
        guard verdict.accepted else { return }
        let bmd = try s.measure(StandardPhantoms.esp, stage: stage, calibration: cal)
        for (name, expected) in Self.nominal.sorted(by: { $0.key < $1.key }) {
            let got = try #require(bmd[name])
            print(String(format: "%@ ESP %@: %.4f (%+.2f %%)", physics.rawValue, name, got, (got - expected) / expected * 100))
            #expect(abs(got - expected) / expected <= 0.01)
        }
    }
}

@Suite("Noise bias of the bone model")
struct NoiseBiasTests {
    /// The analytic second-order correction equals the numerical one (finite differences of
    /// the fitted model), so the formula matches the model term for term.
    @Test func analyticCurvatureMatchesFiniteDifferences() throws {
        var s = Scanner(seed: 65)
        let (_, cal) = try s.calibrate()
        let m = cal.fastBoneModel
        for (u, v, r, vu, vv) in [(4.0, 2.2, 1.5, 0.04, 0.01), (6.5, 3.9, 1.55, 0.02, 0.004), (3.1, 2.0, 1.45, 0.001, 0.0005)] {
            let h = 1e-3
            let fuu = (m.bone(u + h, v, r) - 2 * m.bone(u, v, r) + m.bone(u - h, v, r)) / (h * h)
            let fvv = (m.bone(u, v + h, r) - 2 * m.bone(u, v, r) + m.bone(u, v - h, r)) / (h * h)
            let numeric = m.bone(u, v, r) - 0.5 * (fuu * vu + fvv * vv)
            let analytic = m.unbiasedBone(u, v, r, varU: vu, varV: vv)
            #expect(abs(numeric - analytic) < 1e-6, "\(u) \(v) \(r): \(numeric) vs \(analytic)")
            // The two windows' covariance (the second model's unmixed low window: correlation
            // about −0.18): the mixed derivative's term, 2·f_uv·cov.
            let cov = -0.18 * (vu * vv).squareRoot()
            let fuv = (m.bone(u + h, v + h, r) - m.bone(u + h, v - h, r) - m.bone(u - h, v + h, r) + m.bone(u - h, v - h, r)) / (4 * h * h)
            let numericCov = m.bone(u, v, r) - 0.5 * (fuu * vu + fvv * vv + 2 * fuv * cov)
            let analyticCov = m.unbiasedBone(u, v, r, varU: vu, varV: vv, covUV: cov)
            #expect(abs(numericCov - analyticCov) < 1e-6, "\(u) \(v) \(r) with covariance: \(numericCov) vs \(analyticCov)")
        }
    }
}

@Suite("Each channel's response")
struct ChannelResponseTests {
    /// The second model's channels differ (each channel's threshold trim, the heel effect across
    /// the fan): each channel's response, measured on the calibration phantom, puts them onto the
    /// detector's mean, and the ESP-like phantom should read within 1 %. Only those two effects
    /// are on here. Since every channel's response is measured (2026-12-06; until then 54 of the
    /// 144 never saw a cell and kept 1) a scale per window left seed 66's L1 −1.17 %; with the
    /// low window's cross term per channel (`ChannelCrossTerm.swift`) −0.83 %, seed 67 +0.55 %
    /// (docs/physics.md).
    @Test(arguments: [66, 67] as [UInt64])
    func theSecondModelsChannelsAreEqualised(seed: UInt64) throws {
        var s = Scanner.cdte(seed: seed) {
            $0.pileUp = false; $0.scatterPerGcm2 = 0; $0.energyBlur = false; $0.kEscape = false; $0.chargeSharing = false
        }
        let (stage, cal) = try s.calibrate()
        print("calibration (cdte channels, seed \(seed)): \(cal.verdict); dead time \(cal.deadTimeUs ?? 0) µs, scatter \(String(describing: cal.scatter))")
        #expect(cal.verdict.accepted, "\(cal.verdict)")
        let response = try #require(cal.channelResponse)
        let spread = (response.low.max() ?? 1) - (response.low.min() ?? 1)
        print(String(format: "channel scales, low window: %.4f … %.4f", response.low.min() ?? 0, response.low.max() ?? 0))
        #expect(spread > 0.002, "the channels of this model differ; the response should show it")
        #expect(response.lowCross != nil, "their thresholds and angles shift their windows' energies: a cross term")
        let bmd = try s.measure(StandardPhantoms.esp, stage: stage, calibration: cal)
        for (name, expected) in HonestResultTests.nominal.sorted(by: { $0.key < $1.key }) {
            let got = try #require(bmd[name])
            print(String(format: "cdte channels (seed %d) ESP %@: %.4f (%+.2f %%)", seed, name, got, (got - expected) / expected * 100))
            #expect(abs(got - expected) / expected <= 0.01)
        }
        // The same scans through the same calibration without the response: what it is worth.
        var flat = cal
        flat.channelResponse = nil
        let unequalised = try s.measure(StandardPhantoms.esp, stage: stage, calibration: flat)
        let worst = HonestResultTests.nominal.map { abs((unequalised[$0.key] ?? .nan) - $0.value) / $0.value }.max() ?? .nan
        print(String(format: "cdte channels (seed %d) without the response: worst error %.2f %%", seed, worst * 100))
    }

    /// The second model's detector as a detector is: each channel's threshold trim and the heel
    /// effect, and the energy blur, K-escape and charge sharing that put high-energy photons in
    /// the low window (pile-up and scatter off: each has its own correction and test). The
    /// calibration is accepted, and the ESP-like phantom should read within 1 % (mean of three
    /// scans) on each of three seeds. With the low window unmixed (`LowWindowMixing`, f measured
    /// 0.065 / 0.089 / 0.099; without it L1 read 1.4–2.3 % low and seed 67's calibration was
    /// refused) and each channel's low-window cross term (`ChannelCrossTerm.swift`; with scales
    /// alone seed 66's L1 read −1.53 %), L1 reads −0.60 / −0.89 / −0.11 % and L2, L3 within
    /// 0.75 % (docs/physics.md).
    @Test(arguments: [64, 66, 67] as [UInt64])
    func theSecondModelsDetectorResponse(seed: UInt64) throws {
        var s = Scanner.cdte(seed: seed) { $0.pileUp = false; $0.scatterPerGcm2 = 0 }
        let (stage, cal) = try s.calibrate()
        print("calibration (cdte detector, seed \(seed)): \(cal.verdict); low window mixing \(cal.lowWindowMixing ?? 0)")
        #expect(cal.verdict.accepted, "\(cal.verdict)")
        let f = try #require(cal.lowWindowMixing, "K-escape, charge sharing and the blur put high-energy photons in the low window")
        #expect(f > 0.03 && f < 0.15, "\(f)")
        var sums: [String: Double] = [:]
        for _ in 0..<3 {
            let bmd = try s.measure(StandardPhantoms.esp, stage: stage, calibration: cal)
            for (name, value) in bmd { sums[name, default: 0] += value / 3 }
        }
        for (name, expected) in HonestResultTests.nominal.sorted(by: { $0.key < $1.key }) {
            let got = try #require(sums[name])
            print(String(format: "cdte detector (seed %d) ESP %@: %.4f (%+.2f %%)", seed, name, got, (got - expected) / expected * 100))
            #expect(abs(got - expected) / expected <= 0.01)
        }
    }

    /// Lines over 4 mm cells on a 40-channel detector with channel scales `truth`, the carriage
    /// at `carriages`.
    static func steps(carriages: [Int32], truth: [Double]) -> (phantom: Phantom, geometry: ScanGeometry, lines: [AttenuationLine]) {
        let channels = truth.count
        var cells: [Phantom.Cell] = []
        for k in 0..<12 { cells.append(Phantom.Cell(xUm: [Int32(k * 4_000), Int32(k * 4_000 + 4_000)], yUm: [0, 10_000], hydroxyapatite: 0, lean: 5 + Double(k), fat: 0)) }
        let phantom = Phantom(name: "steps", cells: cells, rois: nil)
        let geometry = ScanGeometry(channels: channels, pitchUm: 1000)
        var lines: [AttenuationLine] = []
        for (i, carriage) in carriages.enumerated() {
            for y in stride(from: Int32(2_000), to: 8_000, by: 1000) {
                var tl = [Double](repeating: .nan, count: channels), th = tl
                for c in 0..<channels {
                    let x = geometry.x(ofChannel: c, carriageX: carriage)
                    guard let k = cells.firstIndex(where: { x >= Double($0.xUm[0]) && x < Double($0.xUm[1]) }) else { continue }
                    let l = 0.2 * cells[k].lean
                    tl[c] = exp(-l / truth[c]); th[c] = exp(-0.7 * l / truth[c])
                }
                let zeros = [Double](repeating: 1e-8, count: channels)
                lines.append(AttenuationLine(index: UInt32(i), yUm: y, xUm: carriage, low: tl, high: th, transmissionLow: tl, transmissionHigh: th,
                                             transmissionVarianceLow: zeros, transmissionVarianceHigh: zeros, varianceLow: zeros,
                                             varianceHigh: zeros, flags: [PixelFlags](repeating: [], count: channels), exposure: 1))
            }
        }
        return (phantom, geometry, lines)
    }

    /// Alternating least squares recovers known channel scales from cells seen by overlapping
    /// sets of channels (hand-made attenuations, no physics): every channel's, the carriage
    /// placed so that the cells' edges fall at another phase at each position.
    @Test func knownScalesAreRecovered() throws {
        let truth = (0..<40).map { 1 + 0.02 * sin(Double($0) / 5) }
        let (phantom, geometry, lines) = Self.steps(carriages: [19_500, 28_800, 38_100], truth: truth)
        let m = try CalibrationMeasurement.measure(lines: lines, geometry: geometry, phantom: phantom, marginUm: 500)
        #expect(m.unmeasured.isEmpty, "unmeasured: \(m.unmeasured)")
        // Up to a common factor (the scales are normalised to a mean of 1).
        for scales in [m.response.low, m.response.high] {
            let ratio = zip(scales, truth).map { $0 / $1 }
            let mean = ratio.reduce(0, +) / Double(ratio.count)
            let worst = ratio.map { abs($0 / mean - 1) }.max() ?? 1
            #expect(worst < 2e-3, "recovered scales differ from the truth by up to \(worst)")
        }
    }

    /// The carriage stepped by whole cell pairs (8 mm over 4 mm cells): the cells' interiors
    /// fall on the same channels at every position, and the channels 0–0.5 mm from an edge
    /// never see one. Their response is unknown: the calibration is refused, naming them,
    /// instead of keeping 1 for them unsaid (as it did until 2026-12-06).
    @Test func channelsNoCellCoversRefuseTheCalibration() throws {
        let truth = (0..<40).map { 1 + 0.02 * sin(Double($0) / 5) }
        let (phantom, geometry, lines) = Self.steps(carriages: [19_500, 27_500, 35_500], truth: truth)
        do {
            _ = try CalibrationMeasurement.measure(lines: lines, geometry: geometry, phantom: phantom, marginUm: 500)
            Issue.record("a calibration with channels no cell covered was accepted")
        } catch {
            #expect(error.description.contains("saw no cell's interior"), "\(error)")
        }
    }

    /// The service procedure's cell passes over the DX-1's calibration phantom reach every
    /// channel but two near the fan's ends (positions a cell width and a ninth apart; at whole
    /// widths 54 of 144 channels saw no cell's interior). The scatter passes, at whole widths,
    /// are not counted.
    @Test func theCalibrationPassesCoverEveryChannel() throws {
        let info = SimulatorConfiguration.standardInfo
        let procedure = try #require(CalibrationProcedure(phantom: StandardPhantoms.calibration, travelXUm: info.travelXUm))
        let geometry = ScanGeometry(channels: Int(info.channels), pitchUm: Int(info.pitchUm))
        let cells = StandardPhantoms.calibration.cells ?? []
        var covered = Set<Int>()
        for pass in procedure.passes where !CalibrationFit.isScatterPass(pass) {
            for c in 0..<geometry.channels {
                let x = geometry.x(ofChannel: c, carriageX: pass.xUm)
                if cells.contains(where: { x >= Double(min($0.xUm[0], $0.xUm[1])) + 1_500 && x < Double(max($0.xUm[0], $0.xUm[1])) - 1_500 }) { covered.insert(c) }
            }
        }
        let missed = (0..<geometry.channels).filter { !covered.contains($0) }
        print("calibration passes: \(Set(procedure.passes.filter { !CalibrationFit.isScatterPass($0) }.map(\.xUm)).count) positions, \(covered.count) of \(geometry.channels) channels see a cell's interior; not: \(missed)")
        // Only within two channels of either end, where the outermost positions alone bring a
        // cell (channel 1 may be missed while channel 0 is not).
        #expect(missed.allSatisfy { $0 < 2 || $0 >= geometry.channels - 2 }, "\(missed)")
    }
}
