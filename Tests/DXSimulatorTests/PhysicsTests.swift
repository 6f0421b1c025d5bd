import DXProtocol
import Foundation
import Testing
@testable import DXSimulator

@Suite("Simulator physics: spectrum, attenuation, detector, phantoms")
struct PhysicsTests {
    static func log(_ x: Double) -> Double { Foundation.log(x) }

    /// The tube's output drifts slowly: 2 % an hour by default, and the counts follow it.
    @Test func tubeOutputDrifts() {
        let c = SimulatorConfiguration()
        #expect(c.tubeOutput(afterUptime: .zero) == 1)
        #expect(abs(c.tubeOutput(afterUptime: .seconds(3600)) - 1.02) < 1e-12)
        var fresh = Detector(channels: 144, pitchUm: 1000, seed: 9), later = fresh
        func mean(_ d: inout Detector, _ factor: Double) -> Double {
            var sum = 0.0
            for _ in 0..<20 {
                let r = d.readLine(mode: .dual, xUm: 200_000, yUm: 1_950_000, periodUs: 10_000, currentUA: 1000, outputFactor: factor, scene: EmptyTable())
                for k in stride(from: 1, to: r.samples.count, by: 2) { sum += Double(r.samples[k]) }
            }
            return sum
        }
        let ratio = mean(&later, c.tubeOutput(afterUptime: .seconds(3600))) / mean(&fresh, 1)
        #expect(abs(ratio - 1.02) < 0.002, "air counts after an hour: ×\(ratio)")
    }

    @Test func attenuationTableMatchesXCOM() {
        // Reference points (NIST XCOM, total with coherent): cortical-bone-like hydroxyapatite
        // and ICRU-44 soft tissue at 50 and 80 keV.
        let i50 = 50 - AttenuationTable.firstEnergyKeV, i80 = 80 - AttenuationTable.firstEnergyKeV
        #expect(abs(AttenuationTable.hydroxyapatite[i50] - 0.5866) < 0.01)
        #expect(abs(AttenuationTable.lean[i50] - 0.2264) < 0.01)
        #expect(abs(AttenuationTable.lean[i80] - 0.1847) < 0.01)
        // Cerium's K edge at 40.44 keV: a jump of several times.
        let ce40 = AttenuationTable.cerium[40 - AttenuationTable.firstEnergyKeV]
        let ce41 = AttenuationTable.cerium[41 - AttenuationTable.firstEnergyKeV]
        #expect(ce41 > 4 * ce40)
    }

    @Test func spectrumShowsTheKEdgeAndTheTungstenLines() {
        let s = XRaySpectrum()
        func at(_ e: Double) -> Double { s.fluence[s.energiesKeV.firstIndex(of: e)!] }
        #expect(at(39) > 3 * at(42), "the cerium filter must cut the beam above its K edge")
        #expect(at(59) > 1.5 * at(56), "the tungsten Kα line must stand out")
        #expect(s.energiesKeV.last! < 100)
        #expect(s.meanEnergy(from: 20, to: 52) < 42 && s.meanEnergy(from: 52, to: 100) > 62)
    }

    @Test func boneAndSoftTissueDifferInRatioOfLogAttenuations() {
        let beam = DualEnergyBeam()
        func r(_ c: Composition) -> Double {
            let t = beam.transmission(c)
            return PhysicsTests.log(1 / t.low) / PhysicsTests.log(1 / t.high)
        }
        let rBone = r(Composition(hydroxyapatite: 1))
        let rLean = r(Composition(lean: 15))
        let rFat = r(Composition(fat: 5))
        // What DEXA rests on: bone's low/high ratio is well above soft tissue's, and fat's is lowest.
        #expect(rBone > 2.0 && rBone < 5.0, "R bone \(rBone)")
        #expect(rLean > 1.1 && rLean < 1.6, "R lean \(rLean)")
        #expect(rBone > rLean + 0.3)
        #expect(rFat < rLean)
        print(String(format: "R values: bone %.3f, lean %.3f, fat %.3f", rBone, rLean, rFat))
    }

    @Test func thickerTissueHardensTheBeam() {
        let beam = DualEnergyBeam()
        // Log attenuation per g/cm² falls with thickness: a polychromatic beam.
        let thin = PhysicsTests.log(1 / beam.transmission(Composition(lean: 2)).low) / 2
        let thick = PhysicsTests.log(1 / beam.transmission(Composition(lean: 25)).low) / 25
        #expect(thick < 0.95 * thin)
        #expect(beam.transmission(.air) == (1, 1))
    }

    @Test func detectorCountsArePoissonAroundTheirMean() {
        var d = Detector(channels: 64, pitchUm: 1000, seed: 3)
        var lows: [Double] = []
        for _ in 0..<200 {
            let line = d.readLine(mode: .dual, xUm: 200_000, yUm: 0, periodUs: 10_000, currentUA: 1000, outputFactor: 1, scene: EmptyTable())
            lows.append(Double(line.samples[2 * 10]))
        }
        let mean = lows.reduce(0, +) / Double(lows.count)
        let variance = lows.map { ($0 - mean) * ($0 - mean) }.reduce(0, +) / Double(lows.count - 1)
        let expected = 3_500 * 10 * d.gain[10] + d.darkOffset[10]
        #expect(abs(mean - expected) / expected < 0.01)
        // Poisson: the variance of the photon part equals its mean (dark offset is constant).
        #expect(abs(variance / (mean - d.darkOffset[10]) - 1) < 0.3)
        // Single mode: low samples are 0 (ICD §3); dark mode: offsets only.
        let single = d.readLine(mode: .single, xUm: 200_000, yUm: 0, periodUs: 10_000, currentUA: 1000, outputFactor: 1, scene: EmptyTable())
        #expect(stride(from: 0, to: single.samples.count, by: 2).allSatisfy { single.samples[$0] == 0 })
        let dark = d.readLine(mode: .dark, xUm: 200_000, yUm: 0, periodUs: 10_000, currentUA: 1000, outputFactor: 1, scene: EmptyTable())
        #expect(dark.samples.allSatisfy { $0 < 400 })
    }

    @Test func longExposuresSaturateAt16Bits() {
        var d = Detector(channels: 8, pitchUm: 1000, seed: 1)
        let line = d.readLine(mode: .dual, xUm: 200_000, yUm: 0, periodUs: 100_000, currentUA: 3000, outputFactor: 1, scene: EmptyTable())
        #expect(line.saturated)
        #expect(line.samples.contains(65535))
    }

    @Test func phantomsFollowTheICD() throws {
        let cal = StandardPhantoms.calibration
        let cells = try #require(cal.cells)
        #expect(cells.count == 75)
        #expect(cells.map(\.hydroxyapatite).min() == 0 && cells.map(\.hydroxyapatite).max() == 2.0)
        #expect(cells.map(\.lean).min() == 5 && cells.map(\.lean).max() == 25)
        #expect(cells.map(\.fat).min() == 0 && cells.map(\.fat).max() == 6)
        // The whole phantom fits in the fan (144 channels × 1 mm around the carriage).
        #expect(cells.allSatisfy { $0.xUm[0] >= 200_000 - 72_000 && $0.xUm[1] <= 200_000 + 72_000 })

        let esp = PhantomScene(StandardPhantoms.esp)
        #expect(esp.composition(xUm: 200_000, yUm: 540_000) == Composition(hydroxyapatite: 0.5, lean: 15, fat: 3))
        #expect(esp.composition(xUm: 150_000, yUm: 540_000) == Composition(hydroxyapatite: 0, lean: 15, fat: 3))
        #expect(esp.composition(xUm: 100_000, yUm: 540_000) == .air)
        #expect(StandardPhantoms.esp.rois?.map(\.name) == ["L1", "L2", "L3"])
        // Round trip through the ICD JSON.
        let json = try JSONEncoder().encode(StandardPhantoms.esp)
        #expect(try JSONDecoder().decode(Phantom.self, from: json) == StandardPhantoms.esp)
        #expect(throws: PhantomError.self) { try StandardPhantoms.scene(named: "/nonexistent.json") }
    }

    @Test func aScanOfTheSpinePhantomShowsTheVertebrae() async throws {
        let clock = ScaledClock(speed: 200)
        var d = Detector(channels: 144, pitchUm: 1000, seed: 9)
        let scene = PhantomScene(StandardPhantoms.esp)
        _ = clock
        // Along the spine's axis, the high-window counts drop in each vertebra, more for denser bone.
        func highCount(y: Int32) -> Double {
            let l = d.readLine(mode: .dual, xUm: 200_000, yUm: y, periodUs: 10_000, currentUA: 1000, outputFactor: 1, scene: scene)
            return Double(l.samples[2 * 71 + 1])
        }
        let tissue = highCount(y: 510_000), l1 = highCount(y: 540_000), l3 = highCount(y: 660_000)
        #expect(l1 < tissue)
        #expect(l3 < l1)
    }
}
