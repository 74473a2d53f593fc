import sys, gzip, struct
import numpy as np
DT={128:np.dtype([("r","u1"),("g","u1"),("b","u1")]),2:np.uint8,4:np.int16,8:np.int32,16:np.float32,64:np.float64,256:np.int8,512:np.uint16,768:np.uint32}
def load(fn):
    b=gzip.open(fn).read() if fn.endswith('.gz') else open(fn,'rb').read()
    e='<' if struct.unpack('<i',b[:4])[0]==348 else '>'
    dim=struct.unpack(e+'8h',b[40:56]); dt=struct.unpack(e+'h',b[70:72])[0]
    pix=struct.unpack(e+'8f',b[76:108]); off=int(struct.unpack(e+'f',b[108:112])[0])
    sl,inter=struct.unpack(e+'2f',b[112:120])
    qf,sf=struct.unpack(e+'2h',b[252:256])
    srow=[struct.unpack(e+'4f',b[280+16*i:296+16*i]) for i in range(3)]
    n=dim[0]; shp=dim[1:1+n]
    a=np.frombuffer(b[off:],dtype=np.dtype(DT[dt]).newbyteorder(e),count=int(np.prod(shp))).reshape(shp,order='F')
    return dict(dim=shp,dt=dt,pix=pix[1:1+n],slope=sl,inter=inter,qform=qf,sform=sf,srow=srow,descrip=b[148:228].rstrip(b'\0')),a
if __name__=='__main__':
    for fn in sys.argv[1:]:
        h,a=load(fn); s=h['slope'] if h['slope'] not in (0.0,) else 1.0
        v=a.astype(np.float64)*s+h['inter']
        u=np.unique(a) if a.dtype.kind in 'iu' and len(np.unique(a))<200 else None
        print(fn.split('/')[-1], 'dim',h['dim'],'dt',h['dt'],'pix',tuple(round(x,3) for x in h['pix']),'scl',h['slope'],h['inter'],'sform',h['sform'],[tuple(round(x,2) for x in r) for r in h['srow']])
        print('   range',v.min(),v.max(),'labels' if u is not None else '', list(u) if u is not None else '', h['descrip'])
