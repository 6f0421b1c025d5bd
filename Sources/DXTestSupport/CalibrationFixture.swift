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
    public static func install(stateDirectory: String) throws {
        try FileManager.default.createDirectory(atPath: stateDirectory, withIntermediateDirectories: true)
        let target = stateDirectory + "/calibration.json"
        try? FileManager.default.removeItem(atPath: target)
        try FileManager.default.copyItem(atPath: path, toPath: target)
    }
}
