// MediaPipe Tasks FaceLandmarker with the face_landmarker.task that web_demo/tools/build_face_landmarker.py
// assembles from the mediapipe 0.10.21 wheel (the models makeup.align's FaceMesh uses), so the page finds
// the same 478 points. Settings follow makeup.align._FaceMesh: up to 4 faces, detection confidence 0.5,
// the largest face wins.
//
// tasks-vision posts usage logs to a Google endpoint (every 60 s and on close); the page's content
// security policy (connect-src 'self') blocks that, so the page reaches nothing but its own server.
import {FaceLandmarker, FilesetResolver} from '@mediapipe/tasks-vision';

const WASM_DIR = new URL('../node_modules/@mediapipe/tasks-vision/wasm', import.meta.url).href;
export const MAX_FACES = 4;
export const MIN_DETECTION_CONFIDENCE = 0.5;

export async function createLandmarker(taskUrl) {
  const fileset = await FilesetResolver.forVisionTasks(WASM_DIR);
  return FaceLandmarker.createFromOptions(fileset, {
    baseOptions: {modelAssetPath: taskUrl, delegate: 'CPU'},
    runningMode: 'IMAGE',
    numFaces: MAX_FACES,
    minFaceDetectionConfidence: MIN_DETECTION_CONFIDENCE,
    minFacePresenceConfidence: MIN_DETECTION_CONFIDENCE,
    minTrackingConfidence: MIN_DETECTION_CONFIDENCE,
  });
}

/**
 * The largest face's landmarks as [[x, y], ...] in photo pixels (pixel centres at integers, like
 * makeup.align: normalised x * width - 0.5), or null when there is none.
 */
export function largestFace(result, width, height) {
  let best = null, bestArea = -1;
  for (const face of result.faceLandmarks || []) {
    const pts = face.map((p) => [p.x * width - 0.5, p.y * height - 0.5]);
    const xs = pts.map((p) => p[0]), ys = pts.map((p) => p[1]);
    const area = (Math.max(...xs) - Math.min(...xs)) * (Math.max(...ys) - Math.min(...ys));
    if (area > bestArea) { best = pts; bestArea = area; }
  }
  return best;
}
