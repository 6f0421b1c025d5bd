import DXProtocol
import Foundation
import Testing
@testable import DXSimulator

/// The second physics model (`cdte`, docs/physics.md "Second model"): each test shows one
/// physical property that a model without it would fail.
@Suite("Second physics model (cdte): spectrum, heel, CdTe detector, pile-up, scatter")
struct SecondPhysicsTests {
    static let channels = 144
    static let ones = [Double](repeating: 1, count: channels)

    /// Mean counts (no noise, unit gain) of a line of compositions.
    static func means(_ physics: inout CdTeLinePhysics, _ line: [Composition], periodUs: UInt32 = 10_000,
                      currentUA: UInt32 = 1000) -> (low: [Double], high: [Double]) {
        var low = [Double](repeating: 0, count: line.count), high = low
        physics.meanCounts(of: line, exposure: LineExposure(periodUs: periodUs, currentUA: currentUA, outputFactor: 1),
                           gain: ones, low: &low, high: &high)
        return (low, high)
    }

    static func uniform(_ c: Composition) -> [Composition] { Array(repeating: c, count: channels) }

    static func physics(_ change: (inout CdTeParameters) -> Void = { _ in }) -> CdTeLinePhysics {
        var p = CdTeParameters()
        change(&p)
        return CdTeLinePhysics(channels: channels, pitchUm: 1000, seed: 5, parameters: p)
    }

    /// Recorded before the seam existed: a seeded kramers detector still gives these samples.
    @Test func kramersSamplesAreUnchangedByTheSeam() {
        var d = Detector(channels: 144, pitchUm: 1000, seed: 42)
        let esp = PhantomScene(StandardPhantoms.esp)
        var hash: UInt64 = 0xcbf2_9ce4_8422_2325
        var picks: [UInt16] = []
        for (mode, y) in [(ScanMode.dual, Int32(540_000)), (.dual, 1_950_000), (.single, 540_000), (.dark, 540_000), (.dual, 600_000)] {
            let r = d.readLine(mode: mode, xUm: 200_000, yUm: y, periodUs: 10_000, currentUA: 1000, outputFactor: 1.01, scene: esp)
            #expect(!r.saturated)
            for s in r.samples { hash = (hash ^ UInt64(s)) &* 0x100_0000_01b3 }
            picks += [r.samples[0], r.samples[143], r.samples[144], r.samples[287]]
        }
        #expect(picks == [35894, 1050, 318, 27766, 35872, 32492, 33267, 28009, 0, 1045, 0, 28057, 208, 207, 197, 189, 36046, 896, 274, 28243])
        #expect(hash == 16_094_820_848_468_889_284)
        #expect(Detector(channels: 4, pitchUm: 1000, seed: 1).physicsModel == .kramers)
        #expect(SimulatorConfiguration().physics == .kramers)
    }

    @Test func modelsAreNamedForTheCommandLine() {
        #expect(PhysicsModel.allCases.map(\.rawValue) == ["kramers", "cdte"])
        #expect(PhysicsModel(rawValue: "cdte") == .cdte)
        #expect(PhysicsModel.allCases.allSatisfy { !$0.summary.isEmpty && !$0.summary.contains("\n") })
    }

    /// A 10 ms line at 1 mA in air reads 20,000–50,000 in each window on every channel, so a
    /// 10 ms·mA air reference does not saturate; the sampled detector agrees with the means.
    @Test func airCountsAtTenMilliampMillisecondsAreInRange() {
        var p = Self.physics()
        let air = Self.means(&p, Self.uniform(.air))
        print(String(format: "cdte air 10 ms·mA: low %.0f…%.0f, high %.0f…%.0f", air.low.min() ?? 0, air.low.max() ?? 0, air.high.min() ?? 0, air.high.max() ?? 0))
        #expect(air.low.allSatisfy { $0 > 20_000 && $0 < 50_000 })
        #expect(air.high.allSatisfy { $0 > 20_000 && $0 < 50_000 })
        var d = Detector(channels: 144, pitchUm: 1000, seed: 4, physics: .cdte)
        let r = d.readLine(mode: .dual, xUm: 200_000, yUm: 1_950_000, periodUs: 10_000, currentUA: 1000, outputFactor: 1, scene: EmptyTable())
        #expect(!r.saturated)
        for c in [0, 71, 143] {
            #expect(r.samples[2 * c] > 20_000 && r.samples[2 * c] < 50_000 + 400)
            #expect(r.samples[2 * c + 1] > 20_000 && r.samples[2 * c + 1] < 50_000 + 400)
        }
    }

    /// Outside pile-up, counts follow period × current.
    @Test func countsAreProportionalToExposureAtLowRate() {
        var p = Self.physics()
        let line = Self.uniform(Composition(lean: 15, fat: 3))
        let one = Self.means(&p, line, periodUs: 10_000, currentUA: 100)
        let two = Self.means(&p, line, periodUs: 20_000, currentUA: 100)
        let ratio = two.low[71] / one.low[71]
        #expect(abs(ratio - 2) < 0.01, "×\(ratio)")
    }

    /// A polychromatic beam hardens: the low window's log attenuation per g/cm² of lean is
    /// lower through 25 g/cm² than through 2 g/cm².
    @Test func thickTissueHardensTheBeam() {
        var p = Self.physics()
        let air = Self.means(&p, Self.uniform(.air), currentUA: 100).low[71]
        func perGram(_ g: Double) -> Double {
            log(air / Self.means(&p, Self.uniform(Composition(lean: g)), currentUA: 100).low[71]) / g
        }
        let thin = perGram(2), thick = perGram(25)
        print(String(format: "cdte low-window μ_eff of lean: %.4f at 2, %.4f at 25 g/cm²", thin, thick))
        #expect(thick < 0.95 * thin)
    }

    /// K-escape and charge sharing put photons of the high band into the low window, where
    /// a sharp-window detector would put none.
    @Test func kEscapeAndChargeSharingFillTheLowWindow() {
        func response(_ change: (inout CdTeParameters) -> Void) -> CdTeResponse.Counts {
            var p = CdTeParameters()
            p.energyBlur = false; p.kEscape = false; p.chargeSharing = false
            change(&p)
            return CdTeResponse(parameters: p, lowThresholdKeV: 25, highThresholdKeV: 50, pixelXUm: 1000).counts(incidentKeV: 70)
        }
        let sharp = response { _ in }
        let escape = response { $0.kEscape = true }
        let sharing = response { $0.chargeSharing = true }
        #expect(sharp.ownLow == 0 && sharp.ownHigh > 0.9)
        // 70 − 23 (Cd Kα) and 70 − 27 (Te Kα) fall in [25, 50).
        #expect(escape.ownLow > 0.05, "K-escape into the low window: \(escape.ownLow)")
        #expect(escape.outLow > 0, "fluorescence absorbed in the neighbour")
        #expect(sharing.ownLow > 0.01 && sharing.outLow > 0.01, "charge sharing: \(sharing.ownLow), \(sharing.outLow)")
        // Below the Cd K edge nothing can escape.
        var p = CdTeParameters(); p.energyBlur = false; p.chargeSharing = false
        #expect(CdTeResponse(parameters: p, lowThresholdKeV: 25, highThresholdKeV: 50, pixelXUm: 1000).counts(incidentKeV: 26).outLow == 0)

        // On a line: behind bone and thick tissue the beam is hard, and the low window holds
        // much more than an ideal detector would record.
        let line = Self.uniform(Composition(hydroxyapatite: 1.5, lean: 20))
        var real = Self.physics { $0.pileUp = false; $0.scatterPerGcm2 = 0 }
        var ideal = Self.physics { $0.pileUp = false; $0.scatterPerGcm2 = 0; $0.kEscape = false; $0.chargeSharing = false; $0.energyBlur = false }
        let r = Self.means(&real, line), i = Self.means(&ideal, line)
        print(String(format: "low/high behind bone: %.3f with escape and sharing, %.3f ideal", r.low[71] / r.high[71], i.low[71] / i.high[71]))
        #expect(r.low[71] / r.high[71] > 1.1 * (i.low[71] / i.high[71]))
    }

    /// Paralyzable pile-up: doubling the current at a very high rate gives less than double
    /// the counts, and piled pulses land in the high window.
    @Test func pileUpLosesCountsAndHardensTheRecordedSpectrum() {
        var p = Self.physics()
        var off = Self.physics { $0.pileUp = false }
        let air = Self.uniform(.air)
        let a = Self.means(&p, air, currentUA: 3000), b = Self.means(&p, air, currentUA: 6000)
        let total = (b.low[71] + b.high[71]) / (a.low[71] + a.high[71])
        #expect(total < 1.8, "doubling 3 → 6 mA: ×\(total)")
        let ao = Self.means(&off, air, currentUA: 3000), bo = Self.means(&off, air, currentUA: 6000)
        #expect(abs((bo.low[71] + bo.high[71]) / (ao.low[71] + ao.high[71]) - 2) < 1e-9)
        #expect(a.high[71] / a.low[71] > ao.high[71] / ao.low[71] * 1.1, "piled pulses move up")
        // At a tenth of a mA it hardly matters.
        let lo = Self.means(&p, air, currentUA: 100), loOff = Self.means(&off, air, currentUA: 100)
        #expect(lo.low[71] / loOff.low[71] > 0.95)
    }

    /// Heel effect: air counts fall smoothly from the cathode end of the fan to the anode end
    /// (channel 0), and the anode end's beam is harder.
    @Test func heelEffectShapesTheAirProfile() {
        var p = Self.physics { $0.pileUp = false }
        let air = Self.means(&p, Self.uniform(.air))
        let total = zip(air.low, air.high).map { $0 + $1 }
        let drop = 1 - total[0] / total[143]
        print(String(format: "heel: anode end %.0f, centre %.0f, cathode end %.0f (%.1f %% lower at the anode end)", total[0], total[71], total[143], 100 * drop))
        #expect(drop > 0.05 && drop < 0.5)
        // Smooth: no step between neighbours beyond what the threshold trims make.
        for c in 2..<142 {  // the end channels lack one neighbour's shared charge: a real step
            let second = abs(total[c + 1] - 2 * total[c] + total[c - 1]) / total[c]
            #expect(second < 0.02, "channel \(c)")
        }
        // Harder at the anode end: more of the beam is in the high window.
        #expect(air.high[0] / air.low[0] > air.high[143] / air.low[143])
        var flat = Self.physics { $0.pileUp = false; $0.heelEffect = false }
        let f = Self.means(&flat, Self.uniform(.air))
        #expect(abs(1 - (f.low[0] + f.high[0]) / (f.low[143] + f.high[143])) < 0.03)
    }

    /// Scatter: a ray behind much tissue next to thin tissue reads more than its primary;
    /// behind uniform tissue the scatter-to-primary ratio is a few per cent.
    @Test func scatterAddsASmoothBackground() {
        let line = (0..<Self.channels).map { $0 < 72 ? Composition(lean: 2) : Composition(lean: 30) }
        var with = Self.physics { $0.pileUp = false }
        var without = Self.physics { $0.pileUp = false; $0.scatterPerGcm2 = 0 }
        let s = Self.means(&with, line, currentUA: 100), primary = Self.means(&without, line, currentUA: 100)
        print(String(format: "behind 30 g/cm² beside 2 g/cm²: low %.2f with scatter, %.2f primary", s.low[80], primary.low[80]))
        #expect(s.low[80] > 1.2 * primary.low[80])
        #expect(s.low[140] > primary.low[140])
        // Scatter falls off away from its source: nearer the thin side, more of it.
        #expect(s.low[75] - primary.low[75] > s.low[140] - primary.low[140])
        let uniform = Self.uniform(Composition(lean: 15))
        let u = Self.means(&with, uniform, currentUA: 100), up = Self.means(&without, uniform, currentUA: 100)
        let spr = u.high[71] / up.high[71] - 1
        print(String(format: "scatter-to-primary behind 15 g/cm²: %.3f", spr))
        #expect(spr > 0.01 && spr < 0.06)
    }

    @Test func seededDetectorRepeatsItself() {
        let scene = PhantomScene(StandardPhantoms.esp)
        func lines(_ seed: UInt64) -> [[UInt16]] {
            var d = Detector(channels: 144, pitchUm: 1000, seed: seed, physics: .cdte)
            return [540_000, 600_000, 1_950_000].map {
                d.readLine(mode: .dual, xUm: 200_000, yUm: $0, periodUs: 10_000, currentUA: 1000, outputFactor: 1, scene: scene).samples
            }
        }
        #expect(lines(11) == lines(11))
        #expect(lines(11) != lines(12))
        // Not the first model's numbers.
        var k = Detector(channels: 144, pitchUm: 1000, seed: 11)
        #expect(k.readLine(mode: .dual, xUm: 200_000, yUm: 540_000, periodUs: 10_000, currentUA: 1000, outputFactor: 1, scene: scene).samples != lines(11)[0])
    }

    @Test func singleAndDarkModes() {
        var d = Detector(channels: 144, pitchUm: 1000, seed: 3, physics: .cdte)
        let single = d.readLine(mode: .single, xUm: 200_000, yUm: 0, periodUs: 10_000, currentUA: 1000, outputFactor: 1, scene: EmptyTable())
        #expect(stride(from: 0, to: single.samples.count, by: 2).allSatisfy { single.samples[$0] == 0 })
        #expect(stride(from: 1, to: single.samples.count, by: 2).allSatisfy { single.samples[$0] > 20_000 })
        let dark = d.readLine(mode: .dark, xUm: 200_000, yUm: 0, periodUs: 10_000, currentUA: 1000, outputFactor: 1, scene: EmptyTable())
        #expect(dark.samples.allSatisfy { $0 > 150 && $0 < 250 })
        #expect(!dark.saturated)
    }

    /// The firmware builds its detector from `SimulatorConfiguration.physics`.
    @Test func configurationCarriesTheModel() {
        var c = SimulatorConfiguration()
        c.physics = .cdte
        #expect(c.physics == .cdte)
    }
}
