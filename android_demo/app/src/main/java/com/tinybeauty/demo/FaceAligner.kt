package com.tinybeauty.demo

import android.content.Context
import android.graphics.Bitmap
import android.util.Log
import com.google.mediapipe.framework.image.BitmapImageBuilder
import com.google.mediapipe.tasks.core.BaseOptions
import com.google.mediapipe.tasks.core.Delegate
import com.google.mediapipe.tasks.vision.core.RunningMode
import com.google.mediapipe.tasks.vision.facelandmarker.FaceLandmarker
import java.util.Arrays
import kotlin.math.abs
import kotlin.math.ceil
import kotlin.math.exp
import kotlin.math.floor
import kotlin.math.max
import kotlin.math.min
import kotlin.math.sqrt

/**
 * The Kotlin twin of `makeup/align.py`, so the phone feeds the model the crops it was trained on:
 *
 * 1. 478 face-mesh landmarks (MediaPipe `FaceLandmarker`, the same topology as the Python face mesh);
 * 2. eye centres (mean of the eye corners, image-left eye first) and the mouth centre (mean of the mouth
 *    corners) mapped onto [TEMPLATE] by a least-squares similarity transform;
 * 3. the frame warped to a `size` x `size` crop (power-of-two area shrink first, then bilinear, reflected
 *    border), the crop the model sees;
 * 4. residual paste-back: `frame + inverse_warp(processed_crop - crop) * feathered_face_mask`, so an
 *    unchanged crop reproduces the frame exactly and nothing outside the face region can change.
 *
 * Pixel convention as in Python (and cv2): pixel centres sit at integer coordinates, so [matrix] is the
 * same 2x3 photo -> crop matrix `makeup.align.align_face` would compute for this frame.
 *
 * Without `face_landmarker.task` in assets, or when no face is found, the crop is the centred square of
 * the frame (like `makeup.align.identity_alignment`: the whole crop counts as the face region).
 *
 * Not thread-safe: create, use and close it on one thread (the camera analysis thread). All buffers are
 * allocated once; a frame allocates only MediaPipe's image wrapper and result.
 */
class FaceAligner(context: Context, val size: Int) : AutoCloseable {

    /** Template, landmark indices, feather and pixel centre: the model card's "alignment" ([Alignment]). */
    val alignment: Alignment = Alignment.load(context)
    private val feather: Double = alignment.feather
    private val pixelCentre: Double = alignment.pixelCentre

    /** How the current crop was framed. */
    enum class Framing { FACE, NO_FACE, NO_LANDMARKER }

    /** The aligned crop, `size * size` ARGB_8888 ints, row-major: what [MakeupModel.run] reads. */
    val crop = IntArray(size * size)

    /** Why there is no landmarker (null when it loaded). */
    var landmarkerProblem: String? = null
        private set

    private val landmarker: FaceLandmarker? = createLandmarker(context)

    var framing = Framing.NO_LANDMARKER
        private set

    private var photoW = 0
    private var photoH = 0

    // 2x3 affine matrices as [m00, m01, m02, m10, m11, m12]: x' = m00*x + m01*y + m02, y' = m10*x + m11*y + m12.
    private val matrix = DoubleArray(6)      // photo -> crop (cv2.warpAffine convention)
    private val inverse = DoubleArray(6)     // crop -> photo
    private val warp = DoubleArray(6)        // photo-pyramid level -> crop, used by the warp
    private val warpInverse = DoubleArray(6)

    private val points = DoubleArray(2 * MESH_POINTS)   // largest face's landmarks, frame pixels
    private var pointCount = 0
    private val keyPoints = DoubleArray(6)              // image-left eye, image-right eye, mouth centre
    private val templatePoints = DoubleArray(6)         // TEMPLATE in crop pixels

    // Face mask: rasterised (eroded) hull, horizontal blur pass, result.
    private val mask = FloatArray(size * size)
    private val blurTmp = FloatArray(size * size)
    private val runStart = IntArray(size)               // per row, the eroded hull is one run [start, end]
    private val runEnd = IntArray(size)
    private val hullKeys = LongArray(MESH_POINTS)
    private val hullX = IntArray(2 * MESH_POINTS + 1)
    private val hullY = IntArray(2 * MESH_POINTS + 1)
    private val edgeNx = DoubleArray(2 * MESH_POINTS)
    private val edgeNy = DoubleArray(2 * MESH_POINTS)
    private val edgeC = DoubleArray(2 * MESH_POINTS)

    // cv2.GaussianBlur's kernel for this crop size and feather (fixed for the aligner's life).
    private val featherRadius = max(feather * size, 0.0)
    private val reach: Int
    private val kernel: FloatArray
    private val kernelCumulative: FloatArray

    private val delta = FloatArray(3 * size * size)     // (processed - crop) * mask, RGB interleaved
    private val pyramid = ArrayList<IntArray>()         // area-halved frames for strong downscales
    private var lastTimestampMs = Long.MIN_VALUE

    init {
        for (i in 0 until 3) {
            templatePoints[2 * i] = alignment.template[i][0] * size - pixelCentre
            templatePoints[2 * i + 1] = alignment.template[i][1] * size - pixelCentre
        }
        if (featherRadius < 0.5) {
            reach = 0
            kernel = floatArrayOf(1f)
        } else {
            val sigma = featherRadius / 2.0
            reach = ceil(3 * sigma).toInt() + 1
            val k = DoubleArray(2 * reach + 1) { i -> exp(-((i - reach) * (i - reach)) / (2 * sigma * sigma)) }
            val total = k.sum()
            kernel = FloatArray(k.size) { i -> (k[i] / total).toFloat() }
        }
        kernelCumulative = FloatArray(kernel.size)
        var acc = 0f
        for (i in kernel.indices) {
            acc += kernel[i]
            kernelCumulative[i] = acc
        }
    }

    /**
     * Frame the crop for this frame: detect the largest face and align it, or fall back to the centred
     * square. [frame] is the upright ARGB_8888 frame and [pixels] its `getPixels` copy (the warp and the
     * paste-back read the int array; MediaPipe reads the bitmap).
     */
    fun align(frame: Bitmap, pixels: IntArray, timestampMs: Long): Framing {
        photoW = frame.width
        photoH = frame.height
        framing = when {
            landmarker == null -> Framing.NO_LANDMARKER
            detectLargestFace(frame, timestampMs) && fitTemplate() -> Framing.FACE
            else -> Framing.NO_FACE
        }
        if (framing != Framing.FACE) centredSquare()
        invert(matrix, inverse)
        warpToCrop(pixels, photoW, photoH)
        if (framing == Framing.FACE) buildFaceMask() else Arrays.fill(mask, 1f)
        return framing
    }

    /**
     * `makeup.align.paste_back`: add the processed crop's change, warped back and weighted by the face mask,
     * to [photo] in place ([photo] is the frame's pixels, same size as in [align]). [processed] is the
     * model's output crop (`size * size` ARGB ints).
     */
    fun pasteBack(photo: IntArray, processed: IntArray) {
        val n = size
        for (i in 0 until n * n) {
            val w = mask[i]
            val j = 3 * i
            if (w == 0f) {
                delta[j] = 0f; delta[j + 1] = 0f; delta[j + 2] = 0f
                continue
            }
            val p = processed[i]
            val c = crop[i]
            delta[j] = (((p shr 16) and 0xFF) - ((c shr 16) and 0xFF)) * w
            delta[j + 1] = (((p shr 8) and 0xFF) - ((c shr 8) and 0xFF)) * w
            delta[j + 2] = ((p and 0xFF) - (c and 0xFF)) * w
        }
        // Photo window holding the crop's footprint plus a pixel of bilinear reach (_crop_box_in_photo).
        var minX = Double.POSITIVE_INFINITY; var minY = Double.POSITIVE_INFINITY
        var maxX = Double.NEGATIVE_INFINITY; var maxY = Double.NEGATIVE_INFINITY
        for (corner in 0 until 4) {
            val cx = if ((corner and 1) == 0) -1.0 else n.toDouble()
            val cy = if ((corner and 2) == 0) -1.0 else n.toDouble()
            val px = inverse[0] * cx + inverse[1] * cy + inverse[2]
            val py = inverse[3] * cx + inverse[4] * cy + inverse[5]
            minX = min(minX, px); maxX = max(maxX, px); minY = min(minY, py); maxY = max(maxY, py)
        }
        val x0 = max(floor(minX).toInt() - 1, 0)
        val y0 = max(floor(minY).toInt() - 1, 0)
        val x1 = min(ceil(maxX).toInt() + 2, photoW)
        val y1 = min(ceil(maxY).toInt() + 2, photoH)
        val m = matrix
        for (y in y0 until y1) {
            for (x in x0 until x1) {
                // cv2.warpAffine(delta, M, WARP_INVERSE_MAP, BORDER_CONSTANT=0): sample the crop at M @ (x, y).
                val u = m[0] * x + m[1] * y + m[2]
                val v = m[3] * x + m[4] * y + m[5]
                if (u <= -1.0 || v <= -1.0 || u >= n || v >= n) continue
                val fx0 = floor(u); val fy0 = floor(v)
                val ix = fx0.toInt(); val iy = fy0.toInt()
                val ax = (u - fx0).toFloat(); val ay = (v - fy0).toFloat()
                var dr = 0f; var dg = 0f; var db = 0f
                for (tap in 0 until 4) {
                    val sx = ix + (tap and 1)
                    val sy = iy + (tap shr 1)
                    if (sx < 0 || sy < 0 || sx >= n || sy >= n) continue
                    val wx = if ((tap and 1) == 0) 1f - ax else ax
                    val wy = if ((tap shr 1) == 0) 1f - ay else ay
                    val wgt = wx * wy
                    if (wgt == 0f) continue
                    val k = 3 * (sy * n + sx)
                    dr += wgt * delta[k]; dg += wgt * delta[k + 1]; db += wgt * delta[k + 2]
                }
                if (dr == 0f && dg == 0f && db == 0f) continue
                val idx = y * photoW + x
                val p = photo[idx]
                val r = clampByte(((p shr 16) and 0xFF) + dr)
                val g = clampByte(((p shr 8) and 0xFF) + dg)
                val b = clampByte((p and 0xFF) + db)
                photo[idx] = (p and ALPHA_MASK) or (r shl 16) or (g shl 8) or b
            }
        }
    }

    /**
     * The face's landmarks in crop pixels (`AlignedFace.landmarks`) into [out] (`2 * MESH_POINTS`), for the
     * look gate; false when this crop has no face (the gate then leaves the crop alone, as `gated_crop` does).
     */
    fun cropLandmarks(out: DoubleArray): Boolean {
        if (framing != Framing.FACE || pointCount < MESH_POINTS) return false
        val m = matrix
        for (i in 0 until MESH_POINTS) {
            val x = points[2 * i]; val y = points[2 * i + 1]
            out[2 * i] = m[0] * x + m[1] * y + m[2]
            out[2 * i + 1] = m[3] * x + m[4] * y + m[5]
        }
        return true
    }

    override fun close() {
        landmarker?.close()
    }

    // ---- landmarks -> similarity transform ----

    private fun createLandmarker(context: Context): FaceLandmarker? {
        if (context.assets.list("")?.contains(LANDMARKER_ASSET) != true) {
            landmarkerProblem = "$LANDMARKER_ASSET is not in assets"
            return null
        }
        return try {
            val base = BaseOptions.builder()
                .setModelAssetPath(LANDMARKER_ASSET)
                .setDelegate(Delegate.CPU)
                .build()
            val options = FaceLandmarker.FaceLandmarkerOptions.builder()
                .setBaseOptions(base)
                .setRunningMode(RunningMode.VIDEO)
                .setNumFaces(MAX_FACES)
                .setMinFaceDetectionConfidence(MIN_DETECTION_CONFIDENCE)
                .setMinFacePresenceConfidence(MIN_DETECTION_CONFIDENCE)
                .setMinTrackingConfidence(MIN_DETECTION_CONFIDENCE)
                .setOutputFaceBlendshapes(false)
                .setOutputFacialTransformationMatrixes(false)
                .build()
            FaceLandmarker.createFromOptions(context, options)
        } catch (e: RuntimeException) {
            Log.e(TAG, "could not create the face landmarker", e)
            landmarkerProblem = "$LANDMARKER_ASSET did not load (${e.javaClass.simpleName})"
            null
        }
    }

    /** `makeup.align.detect_landmarks`: the largest face (by landmark bounding box) into [points]. */
    private fun detectLargestFace(frame: Bitmap, timestampMs: Long): Boolean {
        val detector = landmarker ?: return false
        // VIDEO mode needs strictly increasing timestamps.
        val ts = if (timestampMs > lastTimestampMs) timestampMs else lastTimestampMs + 1
        lastTimestampMs = ts
        val faces = try {
            detector.detectForVideo(BitmapImageBuilder(frame).build(), ts).faceLandmarks()
        } catch (e: RuntimeException) {
            Log.w(TAG, "face landmarker failed on a frame", e)
            return false
        }
        var best = -1
        var bestArea = -1.0
        for (f in faces.indices) {
            val face = faces[f]
            if (face.size < MESH_POINTS) continue
            var lx = Float.POSITIVE_INFINITY; var hx = Float.NEGATIVE_INFINITY
            var ly = Float.POSITIVE_INFINITY; var hy = Float.NEGATIVE_INFINITY
            for (i in 0 until MESH_POINTS) {
                val p = face[i]
                lx = min(lx, p.x()); hx = max(hx, p.x()); ly = min(ly, p.y()); hy = max(hy, p.y())
            }
            val area = (hx - lx).toDouble() * photoW * (hy - ly).toDouble() * photoH
            if (area > bestArea) {
                bestArea = area
                best = f
            }
        }
        if (best < 0) return false
        val face = faces[best]
        for (i in 0 until MESH_POINTS) {
            // MediaPipe's normalised coordinates span the image edge to edge; pixel centres sit at +0.5.
            points[2 * i] = face[i].x() * photoW.toDouble() - pixelCentre
            points[2 * i + 1] = face[i].y() * photoH.toDouble() - pixelCentre
        }
        pointCount = MESH_POINTS
        return true
    }

    /** `makeup.align.key_points` then `similarity_matrix(key_points, template_points(size))` into [matrix]. */
    private fun fitTemplate(): Boolean {
        val ax = meanX(alignment.rightEyeCorners); val ay = meanY(alignment.rightEyeCorners)
        val bx = meanX(alignment.leftEyeCorners); val by = meanY(alignment.leftEyeCorners)
        // Image-left eye first, whichever of the subject's eyes that is (a stable sort by x, as in Python).
        if (ax <= bx) {
            keyPoints[0] = ax; keyPoints[1] = ay; keyPoints[2] = bx; keyPoints[3] = by
        } else {
            keyPoints[0] = bx; keyPoints[1] = by; keyPoints[2] = ax; keyPoints[3] = ay
        }
        keyPoints[4] = meanX(alignment.mouthCorners)
        keyPoints[5] = meanY(alignment.mouthCorners)
        return similarity(keyPoints, templatePoints, matrix)
    }

    private fun meanX(idx: IntArray): Double = (points[2 * idx[0]] + points[2 * idx[1]]) / 2.0
    private fun meanY(idx: IntArray): Double = (points[2 * idx[0] + 1] + points[2 * idx[1] + 1]) / 2.0

    /** Centred square of the frame scaled to the crop, pixel centres to pixel centres (no face found). */
    private fun centredSquare() {
        val side = min(photoW, photoH)
        val ox = (photoW - side) / 2
        val oy = (photoH - side) / 2
        val s = size.toDouble() / side
        matrix[0] = s; matrix[1] = 0.0; matrix[2] = -s * ox + pixelCentre * s - pixelCentre
        matrix[3] = 0.0; matrix[4] = s; matrix[5] = -s * oy + pixelCentre * s - pixelCentre
        pointCount = 0
    }

    // ---- warp (makeup.align.warp_to_crop) ----

    private fun warpToCrop(photo: IntArray, w: Int, h: Int) {
        System.arraycopy(matrix, 0, warp, 0, 6)
        var scale = sqrt(abs(warp[0] * warp[4] - warp[1] * warp[3]))
        var src = photo
        var sw = w
        var sh = h
        var level = 0
        // Bilinear sampling alone aliases when the face is much larger than the crop: halve with area
        // averaging first. A 2x2 box is cv2.INTER_AREA's halving for even sizes (camera frames are even);
        // its pixel (i, j) is centred on photo (2i + 0.5, 2j + 0.5), composed into the matrix below.
        while (scale < 0.5 && min(sw, sh) >= 4) {
            val hw = sw / 2
            val hh = sh / 2
            val half = pyramidLevel(level, hw * hh)
            halve(src, sw, half, hw, hh)
            warp[2] += 0.5 * (warp[0] + warp[1]); warp[5] += 0.5 * (warp[3] + warp[4])
            warp[0] *= 2.0; warp[1] *= 2.0; warp[3] *= 2.0; warp[4] *= 2.0
            src = half; sw = hw; sh = hh
            scale *= 2.0
            level++
        }
        invert(warp, warpInverse)
        val m = warpInverse
        val n = size
        for (y in 0 until n) {
            for (x in 0 until n) {
                crop[y * n + x] = sampleReflect(src, sw, sh, m[0] * x + m[1] * y + m[2], m[3] * x + m[4] * y + m[5])
            }
        }
    }

    private fun pyramidLevel(level: Int, pixels: Int): IntArray {
        if (level < pyramid.size && pyramid[level].size >= pixels) return pyramid[level]
        val buf = IntArray(pixels)
        if (level < pyramid.size) pyramid[level] = buf else pyramid.add(buf)
        return buf
    }

    private fun halve(src: IntArray, sw: Int, dst: IntArray, hw: Int, hh: Int) {
        for (y in 0 until hh) {
            val r0 = 2 * y * sw
            val r1 = r0 + sw
            for (x in 0 until hw) {
                val a = src[r0 + 2 * x]; val b = src[r0 + 2 * x + 1]
                val c = src[r1 + 2 * x]; val d = src[r1 + 2 * x + 1]
                val r = (((a shr 16) and 0xFF) + ((b shr 16) and 0xFF) + ((c shr 16) and 0xFF) + ((d shr 16) and 0xFF) + 2) shr 2
                val g = (((a shr 8) and 0xFF) + ((b shr 8) and 0xFF) + ((c shr 8) and 0xFF) + ((d shr 8) and 0xFF) + 2) shr 2
                val bl = ((a and 0xFF) + (b and 0xFF) + (c and 0xFF) + (d and 0xFF) + 2) shr 2
                dst[y * hw + x] = ALPHA_MASK or (r shl 16) or (g shl 8) or bl
            }
        }
    }

    /** Bilinear sample at (u, v) with cv2.BORDER_REFLECT_101 outside the image. */
    private fun sampleReflect(px: IntArray, w: Int, h: Int, u: Double, v: Double): Int {
        val fx0 = floor(u); val fy0 = floor(v)
        val ax = (u - fx0).toFloat(); val ay = (v - fy0).toFloat()
        val x0 = reflect101(fx0.toInt(), w); val x1 = reflect101(fx0.toInt() + 1, w)
        val y0 = reflect101(fy0.toInt(), h); val y1 = reflect101(fy0.toInt() + 1, h)
        val p00 = px[y0 * w + x0]; val p01 = px[y0 * w + x1]
        val p10 = px[y1 * w + x0]; val p11 = px[y1 * w + x1]
        val r = lerp2((p00 shr 16) and 0xFF, (p01 shr 16) and 0xFF, (p10 shr 16) and 0xFF, (p11 shr 16) and 0xFF, ax, ay)
        val g = lerp2((p00 shr 8) and 0xFF, (p01 shr 8) and 0xFF, (p10 shr 8) and 0xFF, (p11 shr 8) and 0xFF, ax, ay)
        val b = lerp2(p00 and 0xFF, p01 and 0xFF, p10 and 0xFF, p11 and 0xFF, ax, ay)
        return ALPHA_MASK or (r shl 16) or (g shl 8) or b
    }

    // ---- feathered face mask (makeup.align.face_mask) ----

    /**
     * Convex hull of all landmarks in crop pixels (rounded, as `cv2.convexHull(np.round(...))`), eroded by
     * the blur's reach so the feathered edge falls inside the hull, then a Gaussian blur (sigma = feather
     * * size / 2, kernel 2 * reach + 1, zero border). The erosion of a convex polygon by a disc is the
     * polygon inset by the radius, computed per row (to within the disc's pixel discretisation).
     */
    private fun buildFaceMask() {
        val n = size
        val m = matrix
        for (i in 0 until pointCount) {
            val x = points[2 * i]; val y = points[2 * i + 1]
            val cx = Math.rint(m[0] * x + m[1] * y + m[2]).toLong()
            val cy = Math.rint(m[3] * x + m[4] * y + m[5]).toLong()
            hullKeys[i] = ((cx + KEY_OFFSET) shl 32) or (cy + KEY_OFFSET)
        }
        val hullSize = convexHull(pointCount)
        Arrays.fill(mask, 0f)
        if (hullSize < 3) return
        // Inward unit normals: d(p) = nx * x + ny * y + c is the distance inside the edge's line.
        var area2 = 0L
        for (i in 0 until hullSize) {
            val j = (i + 1) % hullSize
            area2 += hullX[i].toLong() * hullY[j] - hullX[j].toLong() * hullY[i]
        }
        if (area2 == 0L) return
        val orientation = if (area2 > 0) 1.0 else -1.0
        var edges = 0
        for (i in 0 until hullSize) {
            val j = (i + 1) % hullSize
            val ex = (hullX[j] - hullX[i]).toDouble(); val ey = (hullY[j] - hullY[i]).toDouble()
            val len = sqrt(ex * ex + ey * ey)
            if (len == 0.0) continue
            edgeNx[edges] = -ey / len * orientation
            edgeNy[edges] = ex / len * orientation
            edgeC[edges] = -(edgeNx[edges] * hullX[i] + edgeNy[edges] * hullY[i])
            edges++
        }
        // A pixel survives cv2.erode if its disc stays inside the filled hull, which reaches half a pixel past
        // the hull's lines: inset by reach - 0.5 (mask within ~0.04 of Python's at the feathered edge).
        val inset = if (featherRadius < 0.5) 0.0 else reach - 0.5
        var firstRow = -1
        var lastRow = -1
        var minCol = n
        var maxCol = -1
        for (y in 0 until n) {
            var lo = Double.NEGATIVE_INFINITY
            var hi = Double.POSITIVE_INFINITY
            for (e in 0 until edges) {
                // nx * x + k >= 0 with k = ny * y + c - inset
                val k = edgeNy[e] * y + edgeC[e] - inset
                val nx = edgeNx[e]
                if (nx > EPS) lo = max(lo, -k / nx)
                else if (nx < -EPS) hi = min(hi, -k / nx)
                else if (k < -EPS) { lo = 1.0; hi = 0.0 }
            }
            val start = max(ceil(lo - EPS).toInt(), 0)
            val end = min(floor(hi + EPS).toInt(), n - 1)
            if (lo > hi || start > end) {
                runStart[y] = 1; runEnd[y] = 0
                continue
            }
            runStart[y] = start; runEnd[y] = end
            if (firstRow < 0) firstRow = y
            lastRow = y
            minCol = min(minCol, start); maxCol = max(maxCol, end)
        }
        if (firstRow < 0) return
        if (featherRadius < 0.5) {  // Python returns the filled hull as is
            for (y in firstRow..lastRow) for (x in runStart[y]..runEnd[y]) mask[y * n + x] = 1f
            return
        }
        val r = reach
        val colLo = max(minCol - r, 0)
        val colHi = min(maxCol + r, n - 1)
        // Horizontal pass: each row is one run of ones, so the sum is a difference of the cumulative kernel.
        Arrays.fill(blurTmp, 0f)
        for (y in firstRow..lastRow) {
            val s = runStart[y]; val e = runEnd[y]
            if (s > e) continue
            for (x in colLo..colHi) {
                val kLo = max(-r, s - x)
                val kHi = min(r, e - x)
                if (kLo > kHi) continue
                blurTmp[y * n + x] = kernelCumulative[kHi + r] - (if (kLo + r > 0) kernelCumulative[kLo + r - 1] else 0f)
            }
        }
        // Vertical pass.
        val rowLo = max(firstRow - r, 0)
        val rowHi = min(lastRow + r, n - 1)
        for (y in rowLo..rowHi) {
            val kLo = max(-r, firstRow - y)
            val kHi = min(r, lastRow - y)
            for (x in colLo..colHi) {
                var acc = 0f
                for (k in kLo..kHi) acc += kernel[k + r] * blurTmp[(y + k) * n + x]
                mask[y * n + x] = acc
            }
        }
    }

    /** Andrew's monotone chain over the first [count] packed points; the hull goes to [hullX]/[hullY]. */
    private fun convexHull(count: Int): Int {
        if (count == 0) return 0
        Arrays.sort(hullKeys, 0, count)
        var h = 0
        fun px(i: Int) = ((hullKeys[i] ushr 32) - KEY_OFFSET).toInt()
        fun py(i: Int) = ((hullKeys[i] and 0xFFFFFFFFL) - KEY_OFFSET).toInt()
        fun cross(ox: Int, oy: Int, ax: Int, ay: Int, bx: Int, by: Int): Long =
            (ax - ox).toLong() * (by - oy) - (ay - oy).toLong() * (bx - ox)
        for (i in 0 until count) {  // lower hull
            val x = px(i); val y = py(i)
            while (h >= 2 && cross(hullX[h - 2], hullY[h - 2], hullX[h - 1], hullY[h - 1], x, y) <= 0) h--
            hullX[h] = x; hullY[h] = y; h++
        }
        val lower = h + 1
        for (i in count - 2 downTo 0) {  // upper hull
            val x = px(i); val y = py(i)
            while (h >= lower && cross(hullX[h - 2], hullY[h - 2], hullX[h - 1], hullY[h - 1], x, y) <= 0) h--
            hullX[h] = x; hullY[h] = y; h++
        }
        return max(h - 1, 1)  // the last point repeats the first
    }

    companion object {
        private const val TAG = "FaceAligner"

        /** MediaPipe's face-landmarker bundle; copied into app/src/main/assets by hand (see README). */
        const val LANDMARKER_ASSET = "face_landmarker.task"

        // ---- Mirrored from makeup/align.py; tests/test_android_demo.py fails when they drift apart. The app
        // reads these from model_card.json's "alignment" ([Alignment.load]); they are its fallback. ----

        /** `makeup.align.TEMPLATE`, in units of the crop side: image-left eye, image-right eye, mouth centre. */
        val TEMPLATE = arrayOf(
            doubleArrayOf(0.375, 0.47),
            doubleArrayOf(0.625, 0.47),
            doubleArrayOf(0.5, 0.745),
        )

        /** Face-mesh indices (478-point topology); "right" is the subject's right = image left. */
        val RIGHT_EYE_CORNERS = intArrayOf(33, 133)
        val LEFT_EYE_CORNERS = intArrayOf(362, 263)
        val MOUTH_CORNERS = intArrayOf(61, 291)

        /** `face_mask`/`paste_back` default soft-edge width, as a fraction of the crop side. */
        const val FEATHER = 0.04

        /** Pixel centres sit at integer coordinates: `template_points = TEMPLATE * size - 0.5`. */
        const val PIXEL_CENTRE = 0.5

        /** The Python face mesh's `max_num_faces` and `min_detection_confidence`. */
        const val MAX_FACES = 4
        const val MIN_DETECTION_CONFIDENCE = 0.5f

        /** Face-mesh landmarks with iris refinement (`refine_landmarks=True`). */
        const val MESH_POINTS = 478

        private const val ALPHA_MASK = -0x1000000  // 0xFF000000
        private const val KEY_OFFSET = 1L shl 30
        private const val EPS = 1e-9

        private fun reflect101(i: Int, n: Int): Int {
            if (n == 1) return 0
            if (i in 0 until n) return i
            val period = 2 * n - 2
            val p = ((i % period) + period) % period
            return if (p < n) p else period - p
        }

        private fun lerp2(p00: Int, p01: Int, p10: Int, p11: Int, ax: Float, ay: Float): Int {
            val top = p00 + (p01 - p00) * ax
            val bottom = p10 + (p11 - p10) * ax
            return clampByte(top + (bottom - top) * ay)
        }

        private fun clampByte(v: Float): Int {
            val r = Math.round(v)
            return if (r < 0) 0 else if (r > 255) 255 else r
        }

        /**
         * `makeup.align.similarity_matrix`: least-squares rotation + uniform scale + translation taking the
         * points [src] onto [dst] (both `[x0, y0, x1, y1, ...]`), as a 2x3 matrix into [out]. In 2-D this
         * closed form equals the Umeyama estimate scikit-image computes. False when it is degenerate.
         */
        fun similarity(src: DoubleArray, dst: DoubleArray, out: DoubleArray): Boolean {
            val count = src.size / 2
            var sx = 0.0; var sy = 0.0; var dx = 0.0; var dy = 0.0
            for (i in 0 until count) {
                sx += src[2 * i]; sy += src[2 * i + 1]; dx += dst[2 * i]; dy += dst[2 * i + 1]
            }
            sx /= count; sy /= count; dx /= count; dy /= count
            var variance = 0.0; var dot = 0.0; var crossSum = 0.0
            for (i in 0 until count) {
                val ux = src[2 * i] - sx; val uy = src[2 * i + 1] - sy
                val vx = dst[2 * i] - dx; val vy = dst[2 * i + 1] - dy
                variance += ux * ux + uy * uy
                dot += ux * vx + uy * vy
                crossSum += ux * vy - uy * vx
            }
            if (!(variance > 1e-12)) return false
            val a = dot / variance
            val b = crossSum / variance
            out[0] = a; out[1] = -b; out[2] = dx - (a * sx - b * sy)
            out[3] = b; out[4] = a; out[5] = dy - (b * sx + a * sy)
            return out.all { it.isFinite() } && a * a + b * b > 1e-12
        }

        /** Inverse of a 2x3 affine matrix (`cv2.invertAffineTransform`). */
        fun invert(m: DoubleArray, out: DoubleArray) {
            val det = m[0] * m[4] - m[1] * m[3]
            val i00 = m[4] / det; val i01 = -m[1] / det
            val i10 = -m[3] / det; val i11 = m[0] / det
            out[0] = i00; out[1] = i01; out[2] = -(i00 * m[2] + i01 * m[5])
            out[3] = i10; out[4] = i11; out[5] = -(i10 * m[2] + i11 * m[5])
        }
    }
}
