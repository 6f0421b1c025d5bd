import DXDecomposition
import Foundation

/// A calibration made the way a service engineer makes one (`scripts/make-calibration-fixture`:
/// `dexa service calibrate` on the embedded simulator's calibration phantom), checked in so
/// that a test that needs a calibrated daemon does not spend a calibration on it.
/// `CalibrationFixtureTests` holds it to the current format and acceptance rule.
public enum CalibrationFixture {
    public static var path: String {
        URL(fileURLWithPath: #filePath).deletingLastPathComponent().deletingLastPathComponent().deletingLastPathComponent()
            .appendingPathComponent("Tests/Fixtures/calibration.json").path
    }

    /// Puts the fixture where a daemon with `stateDirectory` reads its calibration.
    /// `serial`: for a second simulated unit (`simulator_serial`). Every simulated unit has the
    /// same physics, so the fit holds for it; only the unit it names changes. A real unit's
    /// calibration is never re-serialled: that is what the daemon's unit check refuses.
    public static func install(stateDirectory: String, serial: String? = nil) throws {
        try FileManager.default.createDirectory(atPath: stateDirectory, withIntermediateDirectories: true)
        let target = stateDirectory + "/calibration.json"
        try? FileManager.default.removeItem(atPath: target)
        guard let serial else {
            try FileManager.default.copyItem(atPath: path, toPath: target)
            return
        }
        guard let data = FileManager.default.contents(atPath: path) else { throw CocoaError(.fileReadNoSuchFile) }
        var calibration = try JSONDecoder().decode(Calibration.self, from: data)
        calibration.unit?.serial = serial
        try JSONEncoder().encode(calibration).write(to: URL(fileURLWithPath: target))
    }
}
