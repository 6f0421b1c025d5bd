import DXDaemon
import DXDecomposition
import DXSimulator
import DXTestSupport
import Foundation
import Testing

/// The checked-in calibration (`CalibrationFixture`) is one the daemon would use today: this
/// format version, whole, accepted by the acceptance rule, and for the simulator's detector.
/// When this fails, run `scripts/make-calibration-fixture`.
@Suite struct CalibrationFixtureTests {
    @Test func theFixtureIsACalibrationTheDaemonAccepts() throws {
        let dir = TemporaryDirectory()
        try CalibrationFixture.install(stateDirectory: dir.file("state"))
        switch CalibrationStore(stateDirectory: dir.file("state")).load() {
        case .success(let c):
            #expect(Calibration.readableVersions.contains(c.version))
            #expect(c.channelResponse?.channels == Int(SimulatorConfiguration.standardInfo.channels), "run scripts/make-calibration-fixture")
            print("calibration fixture: bone residual \(c.residualHydroxyapatite) g/cm², limit \(c.verdict.limit)")
        case .failure(let problem):
            Issue.record("the calibration fixture is not usable (\(problem)); run scripts/make-calibration-fixture")
        }
    }
}
